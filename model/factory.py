"""The one place that turns a checkpoint into a ready encoder: network, preprocessing and edge detector.

The indexer and the server both call ``load_encoder``, so photos and sketches are always prepared the
way the network was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from model import explain
from model.checkpoint import Checkpoint, CheckpointError, file_checksum, load_checkpoint
from model.choices import PhotoPrecision
from model.config import ModelConfig
from model.cscan import CSCAN
from model.edges import EdgeDetector, build_edge_detector
from model.encoding import Codes, DeviceUnavailable, ImageEncoder
from model.onnx_export import export_graphs, onnx_export_available
from model.onnx_runtime import OnnxBranches, default_folder

__all__ = ["Codes", "Encoder", "encoder_from_checkpoint", "load_encoder", "resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when PyTorch sees a GPU, else the CPU. Raises DeviceUnavailable for ``cuda``
    without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("the device 'cuda' was asked for, but no CUDA device is available")
    return torch.device(name)


def build_model(checkpoint: Checkpoint) -> CSCAN:
    model = CSCAN(checkpoint.config, pretrained=False)
    missing, unexpected = model.load_state_dict(checkpoint.state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model


@dataclass
class Encoder(ImageEncoder):
    """The PyTorch network with its preprocessing (``ImageEncoder``): on a GPU in PyTorch, on a CPU
    through ONNX Runtime when installed; training, evaluation and the ONNX export use it."""

    model: CSCAN
    config: ModelConfig
    edges: EdgeDetector | None
    device: torch.device
    checksum: str = ""
    info: dict = field(default_factory=dict)
    runtime: OnnxBranches | None = None  # ONNX Runtime on the CPU; None: PyTorch (GPU, training)

    @property
    def backend(self) -> str:
        return "onnxruntime" if self.runtime is not None else f"torch ({self.device.type})"

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")

    def _tensor(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(batch).to(self.device)

    @torch.inference_mode()
    def encode_prepared_sketches(self, batch: np.ndarray | torch.Tensor) -> Codes:
        if self.runtime is not None:
            return Codes.of(self.runtime.sketch(np.asarray(batch)))
        with self._autocast():
            return Codes.of(self.model.encode_sketch(self._tensor(batch)).float().cpu().numpy())

    @torch.inference_mode()
    def encode_prepared_photos(self, photos: np.ndarray, edges: np.ndarray | None) -> Codes:
        if self.runtime is not None:
            return Codes.of(self.runtime.photo(photos, edges))
        edge_t = self._tensor(edges) if edges is not None else None
        with self._autocast():
            return Codes.of(self.model.encode_photo(self._tensor(photos), edge_t).float().cpu().numpy())

    def classifier_weights(self) -> tuple[np.ndarray, np.ndarray]:
        layer = self.model.sketch_classifier
        return layer.weight.detach().float().cpu().numpy(), layer.bias.detach().float().cpu().numpy()

    def sketch_attention(self, batch: np.ndarray | torch.Tensor) -> np.ndarray | None:
        with self._autocast():
            return explain.sketch_attention(self.model, torch.as_tensor(batch))

    def photo_masks(self, photos: np.ndarray, edges: np.ndarray | None) -> np.ndarray | None:
        edge_t = torch.from_numpy(edges) if edges is not None else None
        with self._autocast():
            return explain.co_attention(self.model, torch.from_numpy(photos), edge_t)


def choose_backend(backend: str, device: torch.device) -> str:
    """``auto``: ONNX Runtime on the CPU when it is installed (faster at equal codes), else PyTorch."""
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"unknown encoder backend {backend!r}")
    if backend == "onnx":
        if device.type != "cpu":
            raise RuntimeError("the ONNX Runtime backend runs on the CPU; use 'torch' or 'auto' on a GPU")
        if not onnx_export_available():
            raise RuntimeError("the ONNX Runtime backend needs the onnx and onnxruntime packages")
        return "onnx"
    if backend == "auto" and device.type == "cpu" and onnx_export_available():
        return "onnx"
    return "torch"


def encoder_from_checkpoint(
    checkpoint: Checkpoint,
    checksum: str,
    device: str = "auto",
    edge_weights: str | None = None,
    backend: str = "auto",
    cache_dir: Path | None = None,
    image_size: int | None = None,
    photo_precision: PhotoPrecision = PhotoPrecision.FP32,
) -> Encoder:
    dev = resolve_device(device)
    if image_size is not None and image_size != checkpoint.config.image_size:
        # A trial at another input size: the network is convolutional up to pooling, so the weights
        # apply; the ONNX export is fixed to the trained size, so PyTorch runs it.
        if backend == "onnx":
            raise ValueError("the ONNX Runtime backend runs at the trained input size only")
        backend = "torch"
        checkpoint = Checkpoint(
            replace(checkpoint.config, image_size=image_size), checkpoint.state_dict, checkpoint.info
        )
    model = build_model(checkpoint).to(dev).eval()
    edges = (
        build_edge_detector(
            checkpoint.config.edge_detector, str(dev), edge_weights, checkpoint.config.edge_size
        )
        if checkpoint.config.use_edge
        else None
    )
    runtime = None
    chosen = choose_backend(backend, dev)
    if photo_precision == PhotoPrecision.INT8 and chosen != "onnx":
        raise RuntimeError(
            "int8 photo precision runs on ONNX Runtime on a CPU: use fp32 with PyTorch or a GPU"
        )
    if chosen == "onnx":
        folder = cache_dir or default_folder()
        export_graphs(model, checksum, folder)
        runtime = OnnxBranches(
            folder, checksum, checkpoint.config.use_edge, torch.get_num_threads(), photo_precision
        )
    return Encoder(model, checkpoint.config, edges, dev, checksum, checkpoint.info, runtime)


def load_encoder(
    path: str | Path,
    device: str = "auto",
    edge_weights: str | None = None,
    backend: str = "auto",
    cache_dir: Path | None = None,
    image_size: int | None = None,
    photo_precision: PhotoPrecision = PhotoPrecision.FP32,
) -> Encoder:
    """Build model + preprocessing from a checkpoint file; raises CheckpointError on a bad file.

    ``backend``: ``auto`` (ONNX Runtime on a CPU when installed, else PyTorch), ``torch`` or ``onnx``;
    ``cache_dir`` keeps the exported ONNX branches between runs; ``image_size`` runs the network at
    another input size than trained (a speed trial; PyTorch only); ``photo_precision`` int8 runs the
    quantised photo graph (ONNX Runtime only; ``model.onnx_quantise``)."""
    return encoder_from_checkpoint(
        load_checkpoint(path),
        file_checksum(path),
        device,
        edge_weights,
        backend,
        cache_dir,
        image_size,
        photo_precision,
    )
