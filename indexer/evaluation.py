"""Encoding query sketches and gallery photos and scoring the ranking (Hamming and continuous)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from indexer.datasets import Item
from indexer.metrics import retrieval_metrics
from model.config import ModelConfig
from model.cscan import CSCAN
from model.hashing import asymmetric_distances, binarise, hamming_matrix, pack_bits
from model.preprocessing import preprocess_photo_pair, preprocess_sketch


@dataclass
class EncodedSet:
    continuous: np.ndarray
    labels: np.ndarray

    @property
    def packed(self) -> np.ndarray:
        return pack_bits(binarise(self.continuous))


@torch.inference_mode()
def encode_sketches(
    model: CSCAN, config: ModelConfig, images: list[Image.Image], batch: int = 64, device: str = "cpu"
) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(images), batch), desc="encode sketches", unit="batch", leave=False):
        x = torch.stack([preprocess_sketch(im, config.image_size) for im in images[start : start + batch]])
        out.append(model.encode_sketch(x.to(device)).float().cpu().numpy())
    return np.concatenate(out)


@torch.inference_mode()
def encode_photos(
    model: CSCAN,
    config: ModelConfig,
    photos: list[Image.Image],
    edges: list[Image.Image | None],
    batch: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(photos), batch), desc="encode photos", unit="batch", leave=False):
        pairs = [
            preprocess_photo_pair(p, e, config.image_size)
            for p, e in zip(photos[start : start + batch], edges[start : start + batch], strict=True)
        ]
        x = torch.stack([p for p, _ in pairs]).to(device)
        e = torch.stack([e for _, e in pairs]).to(device) if config.use_edge else None  # type: ignore[misc]
        out.append(model.encode_photo(x, e).float().cpu().numpy())
    return np.concatenate(out)


def score(queries: EncodedSet, gallery: EncodedSet, bits: int, k: int = 200) -> dict:
    """Hamming metrics (tie-aware) at the top level; under "asymmetric" the continuous sketch code against
    the photos' bits (what the service ranks by), under "continuous" both sides continuous."""
    hamming = hamming_matrix(queries.packed, gallery.packed)
    result: dict = retrieval_metrics(hamming, queries.labels, gallery.labels, k=k)
    sq = (
        (queries.continuous**2).sum(1)[:, None]
        + (gallery.continuous**2).sum(1)[None]
        - 2 * queries.continuous @ gallery.continuous.T
    )
    result["asymmetric"] = retrieval_metrics(
        asymmetric_distances(queries.continuous, binarise(gallery.continuous)),
        queries.labels,
        gallery.labels,
        k=k,
    )
    result["continuous"] = retrieval_metrics(sq, queries.labels, gallery.labels, k=k)
    result["bits"] = bits
    return result


def load_images(items: list[Item]) -> list[Image.Image]:
    images = []
    for item in items:
        with Image.open(item.path) as im:
            images.append(im.copy())
    return images
