"""Retrieval metrics that are fair to Hamming distances.

With 64-bit codes thousands of photos share a distance, and any order among them is as likely as any
other: a metric that sorts ties by index flatters or punishes a model by chance. These functions return
the *expected* value over a uniformly random order within each group of equal distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QueryScores:
    ap: float
    ap_at_k: float
    precision_at: dict[int, float]


def _groups(distances: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and relevant counts of the tie groups, nearest first."""
    values, inverse = np.unique(distances, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(values))
    hits = np.bincount(inverse, weights=relevant.astype(np.float64), minlength=len(values))
    return sizes, hits


def query_scores(
    distances: np.ndarray, relevant: np.ndarray, k: int = 200, p_at: tuple[int, ...] = (10, 200)
) -> QueryScores:
    """Tie-aware AP, AP@k (normalised by min(R, k)) and precision at the given cut-offs for one query.

    For a relevant item at position p (1-based) inside a tie group of n items with r relevant, preceded
    by N items of which R are relevant, the expected precision at its rank is
    (R + 1 + (p-1)(r-1)/(n-1)) / (N + p); p is uniform over 1..n.
    """
    sizes, hits = _groups(np.asarray(distances), np.asarray(relevant, dtype=bool))
    total_rel = hits.sum()
    precision = {}
    if total_rel == 0:
        return QueryScores(0.0, 0.0, {c: 0.0 for c in p_at})
    ap = ap_k = 0.0
    before_n = 0
    before_r = 0.0
    for n, r in zip(sizes, hits, strict=True):
        if r > 0:
            pos = np.arange(1, n + 1, dtype=np.float64)
            others = (pos - 1) * (r - 1) / max(n - 1, 1)
            exp_prec = (before_r + 1 + others) / (before_n + pos)
            ap += r * exp_prec.mean()
            inside = before_n + pos <= k
            ap_k += r * (exp_prec * inside).sum() / n
        before_n += int(n)
        before_r += r
    for cut in p_at:
        expected_hits = 0.0
        seen = 0
        for n, r in zip(sizes, hits, strict=True):
            if seen >= cut:
                break
            expected_hits += r * min(n, cut - seen) / n
            seen += int(n)
        precision[cut] = expected_hits / cut
    return QueryScores(ap / total_rel, ap_k / min(total_rel, k), precision)


def retrieval_metrics(
    distances: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, k: int = 200
) -> dict[str, float]:
    """mAP, mAP@k, P@10 and P@k over all queries (rows of ``distances``)."""
    scores = [
        query_scores(distances[i], gallery_labels == query_labels[i], k=k, p_at=(10, k))
        for i in range(len(distances))
    ]
    return {
        "mAP": float(np.mean([s.ap for s in scores])),
        f"mAP@{k}": float(np.mean([s.ap_at_k for s in scores])),
        "P@10": float(np.mean([s.precision_at[10] for s in scores])),
        f"P@{k}": float(np.mean([s.precision_at[k] for s in scores])),
        "n_queries": int(distances.shape[0]),
        "n_gallery": int(distances.shape[1]),
    }


def precision_recall_curve(
    distances: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean precision and recall when retrieving everything within Hamming radius 0..bits."""
    precisions, recalls = [], []
    relevant = gallery_labels[None, :] == query_labels[:, None]
    total = relevant.sum(axis=1).clip(min=1)
    for radius in range(bits + 1):
        within = distances <= radius
        got = within.sum(axis=1)
        hits = (within & relevant).sum(axis=1)
        precisions.append(np.mean(np.where(got > 0, hits / np.maximum(got, 1), 1.0)))
        recalls.append(np.mean(hits / total))
    return np.array(precisions), np.array(recalls)
