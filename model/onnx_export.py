"""Exporting CSCAN's branches to ONNX (needs PyTorch and the onnx package), once per checkpoint.

The graphs are written where ``model.onnx_runtime`` looks for them: a folder, one file per graph, named
by the checkpoint's checksum. The service exports the two encoding branches into its cache on first start;
``indexer export-onnx`` also exports the attention masks, for a serving image that has no PyTorch.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from model.cscan import CSCAN
from model.files import atomic_write
from model.onnx_runtime import BRANCHES, MASKS, OPSET, graph_path, onnx_runtime_available

log = logging.getLogger(__name__)


def onnx_export_available() -> bool:
    """Whether graphs can be both exported (onnx) and run (ONNX Runtime)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return onnx_runtime_available()


class _Sketch(torch.nn.Module):
    def __init__(self, model: CSCAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        return self.model.encode_sketch(sketch)


class _Photo(torch.nn.Module):
    def __init__(self, model: CSCAN) -> None:
        super().__init__()
        self.model = model

    def forward(self, photo: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        return self.model.encode_photo(photo, edge)


class _PhotoOnly(_Photo):
    def forward(self, photo: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.model.encode_photo(photo, None)


class _SketchMask(_Sketch):
    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        mask = self.model.sketch_mask(sketch)
        assert mask is not None
        return mask


class _PhotoMask(_Photo):
    def forward(self, photo: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        mask = self.model.photo_mask(photo, edge)
        assert mask is not None
        return mask


class _PhotoOnlyMask(_Photo):
    def forward(self, photo: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        mask = self.model.photo_mask(photo, None)
        assert mask is not None
        return mask


MASK_MODULES = (_SketchMask, _PhotoMask, _PhotoOnlyMask)


def _export(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                module.eval(),
                inputs,
                str(tmp),
                input_names=names,
                output_names=["mask" if isinstance(module, MASK_MODULES) else "codes"],
                dynamic_axes={name: {0: "batch"} for name in names},
                opset_version=OPSET,
                dynamo=False,
            )

    atomic_write(path, write)


def export_graphs(model: CSCAN, checksum: str, folder: Path, masks: bool = False) -> list[Path]:
    """Write the graphs of ``model`` that are not in ``folder`` yet: the two branches, and with
    ``masks`` the attention masks (when the model has attention). Returns every graph's path."""
    size = model.config.image_size
    image = torch.zeros(1, 3, size, size)
    photo_inputs, photo_names = (
        ((image, image), ["photo", "edge"]) if model.config.use_edge else ((image,), ["photo"])
    )
    modules: dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, ...], list[str]]] = {
        "sketch": (_Sketch(model), (image,), ["sketch"]),
        "photo": (_Photo(model) if model.config.use_edge else _PhotoOnly(model), photo_inputs, photo_names),
    }
    if masks and model.config.use_attention:
        modules["sketch-mask"] = (_SketchMask(model), (image,), ["sketch"])
        photo_mask = _PhotoMask(model) if model.config.use_edge else _PhotoOnlyMask(model)
        modules["photo-mask"] = (photo_mask, photo_inputs, photo_names)
    written = []
    for name in (*BRANCHES, *MASKS):
        if name not in modules:
            continue
        path = graph_path(folder, checksum, name)
        if not path.exists():
            log.info("exporting the %s graph to ONNX (once per checkpoint): %s", name, path)
            _export(*modules[name], path)
            path.chmod(0o644)  # read by other users too: a serving image runs as a non-root user
        written.append(path)
    return written
