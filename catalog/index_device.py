"""Where a loaded index is searched: the CPU, or a GPU through faiss-gpu's GpuIndexBinaryFlat.

``SKETCH_INDEX_DEVICE=auto`` uses a GPU when the installed FAISS was built with GPU support and sees
one, and says at start-up which it chose and why; ``cuda`` insists (and refuses to start without one);
``cpu`` never tries. Only exact (flat) binary indexes run on the GPU; HNSW and IVF stay on the CPU.
The CPU index is kept either way: re-ranking reads candidates' codes from host memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import faiss

log = logging.getLogger(__name__)


class IndexDevice(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class IndexDeviceError(RuntimeError):
    """SKETCH_INDEX_DEVICE=cuda, but FAISS cannot use a GPU here."""


@dataclass(frozen=True)
class DeviceChoice:
    device: IndexDevice  # CPU or CUDA, never AUTO
    reason: str


def faiss_gpus() -> int:
    """GPUs the installed FAISS can use (0 for faiss-cpu, which has no GPU classes)."""
    if not hasattr(faiss, "GpuIndexBinaryFlat"):
        return 0
    return int(faiss.get_num_gpus())


def choose_index_device(requested: IndexDevice | str, gpus: int | None = None) -> DeviceChoice:
    requested = IndexDevice(requested)
    gpus = faiss_gpus() if gpus is None else gpus
    if requested == IndexDevice.CPU:
        return DeviceChoice(IndexDevice.CPU, "SKETCH_INDEX_DEVICE=cpu")
    if gpus > 0:
        return DeviceChoice(IndexDevice.CUDA, f"FAISS sees {gpus} GPU(s)")
    why = (
        "the installed FAISS has no GPU support (install faiss-gpu)"
        if not hasattr(faiss, "GpuIndexBinaryFlat")
        else "FAISS sees no GPU"
    )
    if requested == IndexDevice.CUDA:
        raise IndexDeviceError(f"SKETCH_INDEX_DEVICE=cuda but {why}")
    return DeviceChoice(IndexDevice.CPU, why)


class GpuPlacer:
    """Copies flat binary indexes to GPU 0; one FAISS resource object shared by every index."""

    def __init__(self) -> None:
        self._resources: Any = None

    def __call__(self, index: faiss.IndexBinary) -> faiss.IndexBinary:
        concrete = faiss.downcast_IndexBinary(index)
        if not isinstance(concrete, faiss.IndexBinaryFlat):
            log.info("index type %s has no GPU version: searching it on the CPU", type(concrete).__name__)
            return index
        if self._resources is None:
            self._resources = faiss.StandardGpuResources()
        return faiss.GpuIndexBinaryFlat(self._resources, concrete)


def placer_for(choice: DeviceChoice) -> GpuPlacer | None:
    return GpuPlacer() if choice.device == IndexDevice.CUDA else None
