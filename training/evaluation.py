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
from training.datasets import Item, synset_of
from training.metrics import code_statistics, instance_accuracy, retrieval_metrics, subclass_precision


@dataclass
class EncodedSet:
    """Codes with their class labels; ``names`` are what instance figures match on: for queries the
    photo each sketch was drawn from (None when unknown), for a gallery each photo's id (file stem)."""

    codes: Codes
    labels: np.ndarray
    names: list[str | None] | None = None


def training_encoder(model: CSCAN, device: str) -> Encoder:
    """An Encoder around a model being trained (edge maps come from the training cache)."""
    return Encoder(model, model.config, None, torch.device(device))


RANKINGS = ("hamming", "asymmetric", "continuous")


def distance_matrices(q: Codes, g: Codes, bits: int) -> dict[str, np.ndarray]:
    """(Q, G) distances of the three rankings: Hamming on both sides' bits; asymmetric, the continuous
    query code against the gallery's bits (what the service ranks by); continuous on both sides."""
    sq = (
        (q.continuous**2).sum(1)[:, None] + (g.continuous**2).sum(1)[None] - 2 * q.continuous @ g.continuous.T
    )
    return {
        "hamming": hamming_matrix(q.packed, g.packed),
        "asymmetric": asymmetric_distances(q.continuous, unpack_bits(g.packed, bits)),
        "continuous": sq,
    }


def instance_targets(queries: EncodedSet, gallery: EncodedSet) -> np.ndarray:
    """For each query, the gallery position of the photo it was drawn from, or -1."""
    if queries.names is None or gallery.names is None:
        return np.full(len(queries.labels), -1)
    where = {name: i for i, name in enumerate(gallery.names)}
    return np.array([where.get(name, -1) if name is not None else -1 for name in queries.names])


def score(queries: EncodedSet, gallery: EncodedSet, bits: int, k: int = 200) -> dict:
    """Hamming metrics (tie-aware) at the top level; under "asymmetric" the continuous sketch code against
    the photos' bits (what the service ranks by), under "continuous" both sides continuous.

    Where queries name their source photo and it is in the gallery, "instance" holds tie-aware acc@1 and
    acc@10 of that photo (whole gallery and within its class) for each ranking. "codes" describes the
    gallery's codes; "more_like_this" is the synset precision@10 of "more like this" (a photo's bits
    against the other photos of its class, Hamming: how /search/similar ranks) where photo ids carry an
    ImageNet synset."""
    q, g = queries.codes, gallery.codes
    distances = distance_matrices(q, g, bits)
    result: dict = retrieval_metrics(distances["hamming"], queries.labels, gallery.labels, k=k)
    for name in ("asymmetric", "continuous"):
        result[name] = retrieval_metrics(distances[name], queries.labels, gallery.labels, k=k)
    result["bits"] = bits
    targets = instance_targets(queries, gallery)
    known = targets >= 0
    if known.any():
        result["instance"] = {
            name: instance_accuracy(d[known], targets[known], queries.labels[known], gallery.labels)
            for name, d in distances.items()
        }
    result["codes"] = code_statistics(g.packed, gallery.labels, bits)
    synsets = [synset_of(n) for n in gallery.names] if gallery.names is not None else []
    if synsets and all(s is not None for s in synsets):
        result["more_like_this"] = subclass_precision(
            hamming_matrix(g.packed, g.packed), gallery.labels, np.array(synsets)
        )
    return result


def load_images(items: list[Item]) -> list[Image.Image]:
    images = []
    for item in items:
        with Image.open(item.path) as im:
            images.append(im.copy())
    return images


@dataclass
class ValidationSet:
    """Held-out sketches scored during training; ``prefix`` names its figures in the history."""

    prefix: str
    images: list[Image.Image]
    labels: np.ndarray
    sources: list[str | None]


def validation_set(prefix: str, items: list[Item], class_index: dict[str, int]) -> ValidationSet:
    return ValidationSet(
        prefix, load_images(items), np.array([class_index[i.label] for i in items]), [i.source for i in items]
    )


def selection_score(figures: dict[str, float], prefixes: list[str]) -> float:
    """What a run's checkpoint is chosen by (never the test split): the mean, over the validation sets,
    of the Hamming mAP and, where sketches name their source photo, of the within-class acc@10 of that
    photo under the service's (asymmetric) ranking, so class quality alone cannot win."""
    parts = []
    for prefix in prefixes:
        parts.append(figures[f"{prefix}mAP"])
        if f"{prefix}class_acc@10" in figures:
            parts.append(figures[f"{prefix}class_acc@10"])
    return float(np.mean(parts))


def make_validator(
    sets: list[ValidationSet],
    photos: list[Image.Image],
    edges: list[Image.Image | None],
    photo_labels: np.ndarray,
    photo_ids: list[str],
    device: str,
):
    """A function scoring a model being trained on ``sets`` against the training photos: per set its
    mAP (Hamming, asymmetric, continuous) and, where known, within-class acc@1/10 of the source photo;
    ``selection`` is ``selection_score``."""

    def validate(model: CSCAN) -> dict[str, float]:
        encoder = training_encoder(model, device)
        gallery = EncodedSet(encoder.encode_photos(photos, edges), photo_labels, list(photo_ids))
        out: dict[str, float] = {}
        for vs in sets:
            queries = EncodedSet(encoder.encode_sketches(vs.images), vs.labels, vs.sources)
            r = score(queries, gallery, model.config.bits)
            out[f"{vs.prefix}mAP"] = r["mAP"]
            out[f"{vs.prefix}asym_mAP"] = r["asymmetric"]["mAP"]
            out[f"{vs.prefix}cont_mAP"] = r["continuous"]["mAP"]
            if "instance" in r:
                out[f"{vs.prefix}class_acc@1"] = r["instance"]["asymmetric"]["class_acc@1"]
                out[f"{vs.prefix}class_acc@10"] = r["instance"]["asymmetric"]["class_acc@10"]
        out["distinct_codes"] = r["codes"]["distinct_codes"]
        out["selection"] = selection_score(out, [vs.prefix for vs in sets])
        return out

    return validate
