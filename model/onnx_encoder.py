"""The encoder without PyTorch: ONNX Runtime runs graphs exported from the checkpoint beforehand.

What the CPU serving image runs. The checkpoint file is still read, without PyTorch: its config (image
size, bits, edge detector, class names), its checksum (the code cache and the index manifests record it)
and the sketch classifier's two small tensors (the class guesses). The network itself comes from the
ONNX graphs that ``indexer export-onnx`` wrote for that checksum (``make onnx`` before ``docker build``,
or the Dockerfile's export stage), so a replaced checkpoint can never be served with stale graphs: its
checksum names other files, and their absence stops the start with a message saying what to run.

Anything that needs the PyTorch network raises ``TorchRequired`` at load time, never mid-request: a CUDA
device, the ``torch`` backend, HED or PiDiNet edge maps (learned detectors that run on PyTorch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.checkpoint import file_checksum, read_arrays, read_config
from model.choices import PhotoPrecision
from model.config import ModelConfig
from model.edges import EdgeDetector, build_edge_detector
from model.encoding import Codes, Device, ImageEncoder
from model.onnx_runtime import (
    BRANCHES,
    MASKS,
    OnnxBranches,
    default_folder,
    graph_path,
    onnx_runtime_available,
)

CLASSIFIER = ["sketch_classifier.weight", "sketch_classifier.bias"]
NO_TORCH = "this installation has no PyTorch (the CPU serving image runs the network with ONNX Runtime)"


class TorchRequired(RuntimeError):
    """The checkpoint or the settings need PyTorch, which this installation does not have."""


@dataclass
class OnnxEncoder(ImageEncoder):
    """``ImageEncoder`` on ONNX Runtime alone; inputs and outputs are NumPy arrays."""

    config: ModelConfig
    edges: EdgeDetector | None
    runtime: OnnxBranches
    classifier: tuple[np.ndarray, np.ndarray]  # sketch classifier weight (classes, bits), bias (classes,)
    checksum: str = ""
    info: dict = field(default_factory=dict)
    device: Device = field(default_factory=Device)

    @property
    def backend(self) -> str:
        return "onnxruntime (no PyTorch)"

    def encode_prepared_sketches(self, batch: np.ndarray) -> Codes:
        return Codes.of(self.runtime.sketch(batch))

    def encode_prepared_photos(self, photos: np.ndarray, edges: np.ndarray | None) -> Codes:
        return Codes.of(self.runtime.photo(photos, edges))

    def classifier_weights(self) -> tuple[np.ndarray, np.ndarray]:
        return self.classifier

    def sketch_attention(self, batch: np.ndarray) -> np.ndarray | None:
        return self.runtime.sketch_mask(batch) if self.config.use_attention else None

    def photo_masks(self, photos: np.ndarray, edges: np.ndarray | None) -> np.ndarray | None:
        return self.runtime.photo_mask(photos, edges) if self.config.use_attention else None


def _edge_detector(config: ModelConfig, name: str) -> EdgeDetector | None:
    if not config.use_edge:
        return None
    if config.edge_detector != "canny":
        raise TorchRequired(
            f"checkpoint {name} computes its photos' edge maps with {config.edge_detector.upper()}, a "
            f"network that runs on PyTorch, and {NO_TORCH}: serve it from the GPU image "
            "(VARIANT=gpu) or an installation with PyTorch, or train the checkpoint with Canny edges"
        )
    return build_edge_detector("canny")


def load_onnx_encoder(
    path: str | Path,
    device: str = "auto",
    backend: str = "auto",
    cache_dir: Path | None = None,
    threads: int = 2,
    photo_precision: PhotoPrecision = PhotoPrecision.FP32,
) -> OnnxEncoder:
    """The encoder of checkpoint ``path`` from the ONNX graphs in ``cache_dir`` exported for its checksum.

    Raises CheckpointError for a bad checkpoint file, TorchRequired (a RuntimeError) when the checkpoint
    or the settings need PyTorch or the graphs are missing, RuntimeError without ONNX Runtime."""
    path = Path(path)
    if device == "cuda":
        raise TorchRequired(f"SKETCH_DEVICE=cuda needs PyTorch, and {NO_TORCH}: use the GPU image")
    if backend == "torch":
        raise TorchRequired(f"SKETCH_ENCODER_BACKEND=torch needs PyTorch, and {NO_TORCH}: use 'auto'")
    if backend not in ("auto", "onnx"):
        raise ValueError(f"unknown encoder backend {backend!r}")
    if not onnx_runtime_available():
        raise RuntimeError("neither PyTorch nor ONNX Runtime is installed: nothing can run the network")
    config, info = read_config(path)
    edges = _edge_detector(config, path.name)
    checksum = file_checksum(path)
    folder = cache_dir or default_folder()
    needed = [*BRANCHES, *(MASKS if config.use_attention else ())]
    missing = [name for name in needed if not graph_path(folder, checksum, name).is_file()]
    if missing:
        raise TorchRequired(
            f"the ONNX graphs of checkpoint {path.name} (sha256 {checksum[:16]}…) are not in {folder} "
            f"({', '.join(missing)} missing), and exporting them needs PyTorch: {NO_TORCH}. Run "
            f"'indexer export-onnx --checkpoint {path} --out FOLDER' where PyTorch is installed and ship "
            "FOLDER as SKETCH_ONNX_CACHE_DIR ('make onnx' does it for the Docker image)"
        )
    weight, bias = read_arrays(path, CLASSIFIER).values()
    runtime = OnnxBranches(folder, checksum, config.use_edge, threads, photo_precision)
    return OnnxEncoder(config, edges, runtime, (weight, bias), checksum, info)
