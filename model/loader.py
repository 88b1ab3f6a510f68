"""Loading an encoder with or without PyTorch: the one entry point of the service, the indexer and Ray.

Where PyTorch is installed, ``model.factory`` builds the network (ONNX Runtime on a CPU, exported into
the cache on first use; PyTorch on a GPU), as always. Where it is not (the CPU serving image), the
encoder runs graphs exported beforehand (``model.onnx_encoder``). Nothing here imports torch unless it
is installed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from model.choices import PhotoPrecision
from model.encoding import ImageEncoder

_threads: list[int] = []  # set by configure_threads where PyTorch is absent (torch keeps its own)


@lru_cache(maxsize=1)
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def configure_threads(count: int) -> None:
    """Intra-op threads of the network (PyTorch's, and the ONNX Runtime sessions loaded after this)."""
    if torch_available():
        import torch

        torch.set_num_threads(count)
    _threads[:] = [count]


def model_threads() -> int:
    if torch_available():
        import torch

        return torch.get_num_threads()
    return _threads[0] if _threads else os.cpu_count() or 1


def load_encoder(
    path: str | Path,
    device: str = "auto",
    edge_weights: str | None = None,
    backend: str = "auto",
    cache_dir: Path | None = None,
    photo_precision: PhotoPrecision = PhotoPrecision.FP32,
) -> ImageEncoder:
    """The encoder of a checkpoint file (see ``model.factory.load_encoder``). Raises CheckpointError for a
    bad file and RuntimeError for settings this installation cannot run (``TorchRequired`` without
    PyTorch: a CUDA device, HED edges, graphs not exported)."""
    if torch_available():
        from model.factory import load_encoder as load_torch_encoder

        return load_torch_encoder(
            path, device, edge_weights, backend, cache_dir, photo_precision=photo_precision
        )
    from model.onnx_encoder import load_onnx_encoder

    return load_onnx_encoder(path, device, backend, cache_dir, model_threads(), photo_precision)
