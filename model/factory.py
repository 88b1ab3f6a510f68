"""The one place that turns a checkpoint into a ready encoder: network, preprocessing and edge detector.

The indexer and the server both call ``load_encoder``, so photos and sketches are always prepared the
way the network was trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model import explain
from model.checkpoint import Checkpoint, CheckpointError, file_checksum, load_checkpoint
from model.config import ModelConfig
from model.cscan import CSCAN
from model.edges import EdgeDetector, build_edge_detector
from model.hashing import binarise, pack_bits
from model.onnx_runtime import OnnxBranches, onnx_runtime_available
from model.preprocessing import letterbox_content, preprocess_photo_pair, preprocess_sketch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("SKETCH_DEVICE=cuda but no CUDA device is available")
    return torch.device(name)


def build_model(checkpoint: Checkpoint) -> CSCAN:
    model = CSCAN(checkpoint.config, pretrained=False)
    missing, unexpected = model.load_state_dict(checkpoint.state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model


@dataclass(frozen=True)
class Codes:
    """What the encoder returns: continuous codes in (0, 1) and their packed binary form."""

    continuous: np.ndarray  # (N, bits) float32
    packed: np.ndarray  # (N, bits / 8) uint8, FAISS layout

    @classmethod
    def of(cls, continuous: np.ndarray) -> Codes:
        continuous = np.asarray(continuous, dtype=np.float32)
        return cls(continuous, pack_bits(binarise(continuous)))

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, rows: slice) -> Codes:
        return Codes(self.continuous[rows], self.packed[rows])

    @classmethod
    def concat(cls, parts: list[Codes], bits: int) -> Codes:
        if not parts:
            return cls(np.zeros((0, bits), np.float32), np.zeros((0, bits // 8), np.uint8))
        return cls(np.concatenate([p.continuous for p in parts]), np.concatenate([p.packed for p in parts]))


@dataclass
class Encoder:
    """A CSCAN model with its preprocessing: the one inference API of the indexer, the service and
    evaluation. Every call returns ``Codes`` (continuous and packed), so no caller packs by hand."""

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

    @property
    def bits(self) -> int:
        return self.config.bits

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")

    def prepare_sketches(self, sketches: list[Image.Image]) -> torch.Tensor:
        """The shared sketch preprocessing; raises BlankSketchError for a blank sketch."""
        return torch.stack([preprocess_sketch(s, self.config.image_size) for s in sketches])

    @torch.inference_mode()
    def encode_prepared_sketches(self, batch: torch.Tensor) -> Codes:
        if self.runtime is not None:
            return Codes.of(self.runtime.sketch(batch))
        with self._autocast():
            return Codes.of(self.model.encode_sketch(batch.to(self.device)).float().cpu().numpy())

    def encode_sketches(self, sketches: list[Image.Image], batch_size: int = 64) -> Codes:
        parts = [
            self.encode_prepared_sketches(self.prepare_sketches(sketches[i : i + batch_size]))
            for i in range(0, len(sketches), batch_size)
        ]
        return Codes.concat(parts, self.bits)

    def edge_maps(self, photos: list[Image.Image]) -> list[Image.Image] | None:
        return self.edges.detect_batch(photos) if self.edges is not None else None

    def photo_tensors(
        self, photos: list[Image.Image], edges: Sequence[Image.Image | None] | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The shared photo+edge preprocessing, stacked (edges None for a model without the edge branch)."""
        pairs = [
            preprocess_photo_pair(p, edges[i] if edges is not None else None, self.config.image_size)
            for i, p in enumerate(photos)
        ]
        photo_t = torch.stack([p for p, _ in pairs])
        edge_t = torch.stack([e for _, e in pairs]) if self.config.use_edge else None  # type: ignore[misc]
        return photo_t, edge_t

    @torch.inference_mode()
    def _encode_photo_batch(
        self, photos: list[Image.Image], edges: Sequence[Image.Image | None] | None
    ) -> Codes:
        photo_t, edge_t = self.photo_tensors(photos, edges)
        photo_t = photo_t.to(self.device)
        edge_t = edge_t.to(self.device) if edge_t is not None else None
        if self.runtime is not None:
            return Codes.of(self.runtime.photo(photo_t, edge_t))
        with self._autocast():
            return Codes.of(self.model.encode_photo(photo_t, edge_t).float().cpu().numpy())

    def encode_photos(
        self,
        photos: list[Image.Image],
        edges: Sequence[Image.Image | None] | None = None,
        batch_size: int = 64,
    ) -> Codes:
        """Codes for photos; edge maps are computed here unless given (training caches them)."""
        parts = []
        for i in range(0, len(photos), batch_size):
            chunk = photos[i : i + batch_size]
            chunk_edges: Sequence[Image.Image | None] | None = (
                edges[i : i + batch_size] if edges is not None else None
            )
            if self.config.use_edge and chunk_edges is None:
                chunk_edges = self.edge_maps(chunk)
            parts.append(self._encode_photo_batch(chunk, chunk_edges))
        return Codes.concat(parts, self.bits)

    # -- what the network saw ---------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    def sketch_class_probabilities(self, continuous: np.ndarray) -> np.ndarray:
        """(N, classes) softmax of the paper's auxiliary sketch classifier, from the continuous codes the
        search computed anyway: naming what a drawing looks like costs one 64 x C product."""
        weight, bias = self._classifier
        logits = (2 * np.asarray(continuous, np.float32) - 1) @ weight.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    @cached_property
    def _classifier(self) -> tuple[np.ndarray, np.ndarray]:
        layer = self.model.sketch_classifier
        return layer.weight.detach().float().cpu().numpy(), layer.bias.detach().float().cpu().numpy()

    def sketch_attention(self, batch: torch.Tensor) -> np.ndarray | None:
        """Attention masks (N, h, w) of preprocessed sketches; None when the model has no attention."""
        with self._autocast():
            return explain.sketch_attention(self.model, batch)

    def photo_attention(
        self, photos: list[Image.Image], edges: Sequence[Image.Image | None] | None
    ) -> tuple[np.ndarray, list[tuple[float, float, float, float]]] | None:
        """Co-attention masks (N, h, w) of photos, and each photo's area inside its letterboxed input
        as fractions (left, top, right, bottom); None when the model has no attention."""
        photo_t, edge_t = self.photo_tensors(photos, edges)
        with self._autocast():
            masks = explain.co_attention(self.model, photo_t, edge_t)
        if masks is None:
            return None
        size = self.config.image_size
        areas = [tuple(v / size for v in letterbox_content(*p.size, size)) for p in photos]
        return masks, areas  # type: ignore[return-value]


def choose_backend(backend: str, device: torch.device) -> str:
    """``auto``: ONNX Runtime on the CPU when it is installed (faster at equal codes), else PyTorch."""
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"unknown encoder backend {backend!r}")
    if backend == "onnx":
        if device.type != "cpu":
            raise RuntimeError("the ONNX Runtime backend runs on the CPU; use 'torch' or 'auto' on a GPU")
        if not onnx_runtime_available():
            raise RuntimeError("the ONNX Runtime backend needs the onnx and onnxruntime packages")
        return "onnx"
    if backend == "auto" and device.type == "cpu" and onnx_runtime_available():
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
    if choose_backend(backend, dev) == "onnx":
        folder = cache_dir or Path.home() / ".cache" / "sketch-search" / "onnx"
        runtime = OnnxBranches(model, checksum, folder, torch.get_num_threads())
    return Encoder(model, checkpoint.config, edges, dev, checksum, checkpoint.info, runtime)


def load_encoder(
    path: str | Path,
    device: str = "auto",
    edge_weights: str | None = None,
    backend: str = "auto",
    cache_dir: Path | None = None,
    image_size: int | None = None,
) -> Encoder:
    """Build model + preprocessing from a checkpoint file; raises CheckpointError on a bad file.

    ``backend``: ``auto`` (ONNX Runtime on a CPU when installed, else PyTorch), ``torch`` or ``onnx``;
    ``cache_dir`` keeps the exported ONNX branches between runs; ``image_size`` runs the network at
    another input size than trained (a speed trial; PyTorch only)."""
    return encoder_from_checkpoint(
        load_checkpoint(path), file_checksum(path), device, edge_weights, backend, cache_dir, image_size
    )
