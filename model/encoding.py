"""What every encoder offers, with or without PyTorch: codes, the shared preprocessing and batching loops.

Two encoders implement it: ``model.factory.Encoder`` (the PyTorch network, on a GPU or through ONNX Runtime
on a CPU; training and export need it) and ``model.onnx_encoder.OnnxEncoder`` (ONNX Runtime alone, for a
serving image that carries no PyTorch). Callers (the service, the indexer, the gallery builder) only see
this interface, and nothing here imports torch. Prepared inputs are NumPy arrays, (N, 3, S, S) float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from model.choices import PhotoPrecision
from model.config import ModelConfig
from model.edges import EdgeDetector
from model.hashing import binarise, pack_bits
from model.preprocessing import letterbox_content, photo_pair_arrays, sketch_array

if TYPE_CHECKING:
    from model.onnx_runtime import OnnxBranches


class DeviceUnavailable(RuntimeError):
    """The device asked for is not on this machine."""


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


@dataclass(frozen=True)
class Device:
    """The device of an encoder without PyTorch (always the CPU)."""

    type: str = "cpu"

    def __str__(self) -> str:
        return self.type


PhotoAttention = tuple[np.ndarray, list[tuple[float, float, float, float]]]


class ImageEncoder(ABC):
    """A CSCAN network with its preprocessing: the one inference API of the indexer, the service and
    evaluation. Every call returns ``Codes`` (continuous and packed), so no caller packs by hand."""

    config: ModelConfig
    edges: EdgeDetector | None
    device: Any  # a torch.device or a Device: only its ``type`` is read
    checksum: str  # sha256 of the checkpoint file: the code cache and the index manifests record it
    info: dict
    runtime: OnnxBranches | None  # ONNX Runtime's sessions; None where PyTorch runs the network

    @property
    @abstractmethod
    def backend(self) -> str:
        """What runs the network, for the start-up log: ``onnxruntime`` or ``torch (cpu|cuda)``."""

    @property
    def bits(self) -> int:
        return self.config.bits

    @property
    def photo_precision(self) -> PhotoPrecision:
        """The photo branch's arithmetic (int8 only on ONNX Runtime, when asked for)."""
        return self.runtime.photo_precision if self.runtime is not None else PhotoPrecision.FP32

    @property
    def photo_codes_key(self) -> str:
        """Whose photo codes these are, for the code cache and the index manifest: the checkpoint's
        checksum (its first 32 hex digits), and for int8 which quantised graph (its codes differ from
        float32's, and from another calibration's, in a few bits, so they never mix)."""
        if self.photo_precision == PhotoPrecision.INT8:
            assert self.runtime is not None  # int8 runs on ONNX Runtime only
            return f"{self.checksum[:32]}-int8-{self.runtime.photo_graph_digest}"
        return self.checksum[:32]

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    # -- sketches ---------------------------------------------------------------------------------------
    def prepare_sketches(
        self, sketches: list[Image.Image], inks: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """(N, 3, S, S) float32 network inputs; raises BlankSketchError for a blank sketch. ``inks``:
        the sketches' ink maps (``model.preprocessing.ink_map``) when the caller computed them already."""
        arrays = [
            sketch_array(s, self.config.image_size, inks[i] if inks is not None else None)
            for i, s in enumerate(sketches)
        ]
        return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)  # a search's one: no copy

    @abstractmethod
    def encode_prepared_sketches(self, batch: np.ndarray) -> Codes:
        """Codes of sketches from ``prepare_sketches``."""

    def encode_sketches(self, sketches: list[Image.Image], batch_size: int = 64) -> Codes:
        parts = [
            self.encode_prepared_sketches(self.prepare_sketches(sketches[i : i + batch_size]))
            for i in range(0, len(sketches), batch_size)
        ]
        return Codes.concat(parts, self.bits)

    # -- photos -----------------------------------------------------------------------------------------
    def edge_maps(self, photos: list[Image.Image]) -> list[Image.Image] | None:
        return self.edges.detect_batch(photos) if self.edges is not None else None

    def photo_arrays(
        self, photos: list[Image.Image], edges: Sequence[Image.Image | None] | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The shared photo+edge preprocessing, stacked: (N, 3, S, S) float32 each (edges None for a
        model without the edge branch)."""
        pairs = [
            photo_pair_arrays(p, edges[i] if edges is not None else None, self.config.image_size)
            for i, p in enumerate(photos)
        ]
        photo_a = np.stack([p for p, _ in pairs])
        edge_a = np.stack([e for _, e in pairs]) if self.config.use_edge else None  # type: ignore[misc]
        return photo_a, edge_a

    @abstractmethod
    def encode_prepared_photos(self, photos: np.ndarray, edges: np.ndarray | None) -> Codes:
        """Codes of photos (and their edge maps) from ``photo_arrays``."""

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
            parts.append(self.encode_prepared_photos(*self.photo_arrays(chunk, chunk_edges)))
        return Codes.concat(parts, self.bits)

    # -- what the network saw ---------------------------------------------------------------------------
    @abstractmethod
    def classifier_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The auxiliary sketch classifier: weight (classes, bits) and bias (classes,), float32."""

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
        return self.classifier_weights()

    @abstractmethod
    def sketch_attention(self, batch: np.ndarray) -> np.ndarray | None:
        """Attention masks (N, h, w) of prepared sketches; None when the model has no attention."""

    @abstractmethod
    def photo_masks(self, photos: np.ndarray, edges: np.ndarray | None) -> np.ndarray | None:
        """Co-attention masks (N, h, w) of prepared photos; None when the model has no attention."""

    def photo_attention(
        self, photos: list[Image.Image], edges: Sequence[Image.Image | None] | None
    ) -> PhotoAttention | None:
        """Co-attention masks (N, h, w) of photos, and each photo's area inside its letterboxed input
        as fractions (left, top, right, bottom); None when the model has no attention."""
        masks = self.photo_masks(*self.photo_arrays(photos, edges))
        if masks is None:
            return None
        size = self.config.image_size
        areas = [tuple(v / size for v in letterbox_content(*p.size, size)) for p in photos]
        return masks, areas  # type: ignore[return-value]
