"""The one place that turns a checkpoint into a ready encoder: network, preprocessing and edge detector.

The indexer and the server both call ``load_encoder``, so photos and sketches are always prepared the
way the network was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.checkpoint import Checkpoint, CheckpointError, file_checksum, load_checkpoint
from model.config import ModelConfig
from model.cscan import CSCAN
from model.edges import EdgeDetector, build_edge_detector
from model.hashing import binarise, pack_bits
from model.preprocessing import preprocess_photo_pair, preprocess_sketch


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


@dataclass
class Encoder:
    """A loaded CSCAN model with its preprocessing; returns packed binary codes."""

    model: CSCAN
    config: ModelConfig
    edges: EdgeDetector | None
    device: torch.device
    checksum: str
    info: dict

    @property
    def bits(self) -> int:
        return self.config.bits

    def _autocast(self):  # type: ignore[no-untyped-def]
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")

    def prepare_sketches(self, sketches: list[Image.Image]) -> torch.Tensor:
        """The shared sketch preprocessing; raises BlankSketchError for a blank sketch."""
        return torch.stack([preprocess_sketch(s, self.config.image_size) for s in sketches])

    @torch.inference_mode()
    def encode_sketch_batch(self, batch: torch.Tensor) -> np.ndarray:
        with self._autocast():
            return self.model.encode_sketch(batch.to(self.device)).float().cpu().numpy()

    def sketch_codes(self, sketches: list[Image.Image]) -> np.ndarray:
        """Continuous codes (N, bits) for sketches."""
        return self.encode_sketch_batch(self.prepare_sketches(sketches))

    def edge_maps(self, photos: list[Image.Image]) -> list[Image.Image] | None:
        return self.edges.detect_batch(photos) if self.edges is not None else None

    @torch.inference_mode()
    def photo_codes(self, photos: list[Image.Image], edges: list[Image.Image] | None = None) -> np.ndarray:
        if self.config.use_edge and edges is None:
            edges = self.edge_maps(photos)
        pairs = [
            preprocess_photo_pair(p, edges[i] if edges is not None else None, self.config.image_size)
            for i, p in enumerate(photos)
        ]
        photo_t = torch.stack([p for p, _ in pairs]).to(self.device)
        edge_t = torch.stack([e for _, e in pairs]).to(self.device) if self.config.use_edge else None  # type: ignore[misc]
        with self._autocast():
            return self.model.encode_photo(photo_t, edge_t).float().cpu().numpy()

    def pack(self, continuous: np.ndarray) -> np.ndarray:
        return pack_bits(binarise(continuous))


def encoder_from_checkpoint(
    checkpoint: Checkpoint, checksum: str, device: str = "auto", edge_weights: str | None = None
) -> Encoder:
    dev = resolve_device(device)
    model = build_model(checkpoint).to(dev).eval()
    edges = (
        build_edge_detector(
            checkpoint.config.edge_detector, str(dev), edge_weights, checkpoint.config.edge_size
        )
        if checkpoint.config.use_edge
        else None
    )
    return Encoder(model, checkpoint.config, edges, dev, checksum, checkpoint.info)


def load_encoder(path: str | Path, device: str = "auto", edge_weights: str | None = None) -> Encoder:
    """Build model + preprocessing from a checkpoint file; raises CheckpointError on a bad file."""
    return encoder_from_checkpoint(load_checkpoint(path), file_checksum(path), device, edge_weights)
