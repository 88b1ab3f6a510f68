"""The named choices of a network and its training, each defined once: the model's registries, the
checkpoint's config and the CLI all use these enums (the CLI lists them in --help and refuses others).

No heavy imports here: a checkpoint's config is read without PyTorch."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar


class Backbone(StrEnum):
    """Feature extractor of every branch (``model/backbones.py``)."""

    LITE0 = "efficientnet_lite0"
    LITE2 = "efficientnet_lite2"
    RESNET50 = "resnet50"
    VGG16 = "vgg16"


class EdgeDetectorName(StrEnum):
    """How a photo's edge map is drawn (``model/edges``)."""

    CANNY = "canny"
    HED = "hed"
    PIDINET = "pidinet"


class Fusion(StrEnum):
    """How the photo and edge branches' high-level features are joined."""

    SUM = "sum"
    CONCAT = "concat"


class NegativeMining(StrEnum):
    """Which in-batch photos of other classes a sketch's triplets use (``model/losses.py``)."""

    ALL = "all"
    RANDOM = "random"
    HARD = "hard"


class PhotoPrecision(StrEnum):
    """Arithmetic of the photo branch on ONNX Runtime (``model/onnx_quantise.py``): ``int8`` is static
    quantisation calibrated on real photos: the network about twice as fast, whole builds about 1.6×, at
    equal dev mAP (``python -m benchmarks.indexing_throughput``). Sketches always run in float32."""

    FP32 = "fp32"
    INT8 = "int8"


E = TypeVar("E", bound=StrEnum)


def parse_choice(kind: type[E], value: str, what: str) -> E:
    """``value`` as a member of ``kind``; ValueError naming ``what`` and the valid values otherwise."""
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"unknown {what} {value!r}; choose one of {valid}") from None
