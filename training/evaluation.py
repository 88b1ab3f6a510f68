"""Scoring a ranking of encoded queries against an encoded gallery (Hamming, asymmetric, continuous).

Encoding goes through ``model.factory.Encoder``, the same API the indexer and the service use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.checkpoint import load_checkpoint, save_checkpoint
from model.choices import PhotoPrecision
from model.cscan import CSCAN
from model.factory import Codes, Encoder, load_encoder
from model.hashing import asymmetric_distances, hamming_matrix, unpack_bits
from training.datasets import Item, load_images, read_items, synset_of
from training.metrics import (
    code_statistics,
    instance_accuracy,
    precision_recall_curve,
    retrieval_metrics,
    subclass_precision,
)
from training.plots import pr_curve, retrieval_grid
from training.training import load_photos


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


@dataclass
class ValidationSet:
    """Held-out sketches scored during training; ``prefix`` names its figures in the history."""

    prefix: str
    images: list[Image.Image]
    labels: np.ndarray
    sources: list[str | None]


def validation_set(prefix: str, items: list[Item], class_index: dict[str, int]) -> ValidationSet:
    images = load_images(items, f"{prefix or 'sketchy_'}validation")
    labels = np.array([class_index[i.label] for i in items])
    return ValidationSet(prefix, images, labels, [i.source for i in items])


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


@dataclass
class Evaluation:
    """What ``evaluate_checkpoint`` measured, with the encoded sets and images behind it (for figures)."""

    result: dict
    queries: EncodedSet
    gallery: EncodedSet
    query_images: list[Image.Image]
    photos: list[Image.Image]
    bits: int


def evaluate_checkpoint(
    checkpoint: Path,
    queries: Path,
    gallery: Path,
    root: Path | None = None,
    device: str = "auto",
    batch: int = 64,
    cache_dir: Path = Path("data/cache/edges"),
    edge_weights: Path | None = None,
    image_size: int | None = None,
    log: Callable[[str], None] = print,
    photo_precision: PhotoPrecision = PhotoPrecision.FP32,
    onnx_cache: Path | None = None,
) -> Evaluation:
    """Encode query sketches and gallery photos (split files or class folders) with a checkpoint and
    ``score`` them. Queries whose class has no photo in the gallery are skipped (and counted).

    ``image_size`` evaluates at another input size than trained (a speed trial); ``photo_precision``
    int8 encodes the photos with the quantised graph in ``onnx_cache`` (ONNX Runtime). Raises CheckpointError
    for a bad checkpoint and ValueError when no query shares a class with the gallery."""
    started = time.monotonic()
    encoder = load_encoder(
        checkpoint,
        device,
        str(edge_weights) if edge_weights else None,
        cache_dir=onnx_cache,
        image_size=image_size,
        photo_precision=photo_precision,
    )
    query_items, gallery_items = read_items(queries, root), read_items(gallery, root)
    gallery_classes = {i.label for i in gallery_items}
    unmatched = [i for i in query_items if i.label not in gallery_classes]
    if unmatched:  # e.g. TU-Berlin classes without photos: nothing to retrieve, AP undefined
        query_items = [i for i in query_items if i.label in gallery_classes]
        log(f"skipped {len(unmatched)} queries whose class has no photo in the gallery")
    if not query_items:
        raise ValueError("no query shares a class with the gallery")
    classes = sorted({i.label for i in query_items} | gallery_classes)
    index = {c: i for i, c in enumerate(classes)}
    query_images = load_images(query_items)
    photos, edges = load_photos(gallery_items, encoder.edges, cache_dir)
    query_set = EncodedSet(
        encoder.encode_sketches(query_images, batch),
        np.array([index[i.label] for i in query_items]),
        [i.source for i in query_items],
    )
    gallery_set = EncodedSet(
        encoder.encode_photos(photos, edges, batch),
        np.array([index[i.label] for i in gallery_items]),
        [i.path.stem for i in gallery_items],
    )
    result = score(query_set, gallery_set, encoder.bits)
    result["checkpoint"] = str(checkpoint)
    result["skipped_queries_without_photos"] = len(unmatched)
    result["seconds"] = round(time.monotonic() - started, 1)
    return Evaluation(result, query_set, gallery_set, query_images, photos, encoder.bits)


def record_metrics(checkpoint: Path, result: dict, key: str, queries: Path, gallery: Path) -> None:
    """Store a summary of ``result`` in the checkpoint's metadata under ``key`` (the release step).
    The weights are fp16 values already: re-saving changes none of them."""
    ckpt = load_checkpoint(checkpoint)
    summary = {k: result[k] for k in ("mAP", "mAP@200", "P@10", "P@200", "n_queries", "n_gallery")}
    summary["continuous_mAP"] = result["continuous"]["mAP"]
    summary["asymmetric_mAP"] = result["asymmetric"]["mAP"]
    if "instance" in result:
        asym = result["instance"]["asymmetric"]
        summary["class_acc@1"], summary["class_acc@10"] = asym["class_acc@1"], asym["class_acc@10"]
    summary["queries"], summary["gallery"] = str(queries), str(gallery)
    ckpt.info.setdefault("metrics", {})[key] = summary
    save_checkpoint(checkpoint, ckpt)


def write_figures(evaluation: Evaluation, folder: Path, examples: int = 8) -> None:
    """The precision-recall curve of Hamming ranking and a grid of example retrievals (random queries,
    ties in random order) as PNGs in ``folder``."""
    q, g = evaluation.queries, evaluation.gallery
    hamming = hamming_matrix(q.codes.packed, g.codes.packed)
    precision, recall = precision_recall_curve(hamming, q.labels, g.labels, evaluation.bits)
    mean_ap = evaluation.result["mAP"]
    pr_curve(precision, recall, folder / "pr_curve.png", f"{evaluation.bits}-bit Hamming, mAP {mean_ap:.3f}")
    rng = np.random.default_rng(0)
    picks = rng.choice(len(q.labels), size=min(examples, len(q.labels)), replace=False)
    rows = []
    for qi in picks:
        order = np.lexsort((rng.random(len(g.labels)), hamming[qi]))[:examples]
        rows.append([(evaluation.photos[j], bool(g.labels[j] == q.labels[qi])) for j in order])
    retrieval_grid([evaluation.query_images[i] for i in picks], rows, folder / "example_retrievals.png")
