"""Scoring a ranking of encoded queries against an encoded gallery (Hamming, asymmetric, continuous).

Encoding goes through ``model.factory.Encoder``, the same API the indexer and the service use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from model.cscan import CSCAN
from model.factory import Codes, Encoder
from model.hashing import asymmetric_distances, hamming_matrix, unpack_bits
from training.datasets import Item
from training.metrics import retrieval_metrics


@dataclass
class EncodedSet:
    codes: Codes
    labels: np.ndarray


def training_encoder(model: CSCAN, device: str) -> Encoder:
    """An Encoder around a model being trained (edge maps come from the training cache)."""
    return Encoder(model, model.config, None, torch.device(device))


def score(queries: EncodedSet, gallery: EncodedSet, bits: int, k: int = 200) -> dict:
    """Hamming metrics (tie-aware) at the top level; under "asymmetric" the continuous sketch code against
    the photos' bits (what the service ranks by), under "continuous" both sides continuous."""
    q, g = queries.codes, gallery.codes
    result: dict = retrieval_metrics(hamming_matrix(q.packed, g.packed), queries.labels, gallery.labels, k=k)
    asym = asymmetric_distances(q.continuous, unpack_bits(g.packed, bits))
    result["asymmetric"] = retrieval_metrics(asym, queries.labels, gallery.labels, k=k)
    sq = (
        (q.continuous**2).sum(1)[:, None] + (g.continuous**2).sum(1)[None] - 2 * q.continuous @ g.continuous.T
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
