"""Retrieval metrics that are fair to Hamming distances.

With 64-bit codes thousands of photos share a distance, and any order among them is as likely as any
other: a metric that sorts ties by index flatters or punishes a model by chance. These functions return
the *expected* value over a uniformly random order within each group of equal distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.hashing import hamming_matrix, unpack_bits


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


def rank_hit_probability(
    distances: np.ndarray, targets: np.ndarray, k: int, within: np.ndarray | None = None
):
    """Tie-aware acc@k of one target per query: the probability that query i's target ranks in its top k
    when equal distances come in random order.

    ``distances`` (Q, G), ``targets`` (Q,) gallery indices; ``within`` (Q, G) bool restricts each query's
    ranking to some gallery items (e.g. its class; the target must be among them). With n items strictly
    nearer than the target and t items tied with it (the target included), the target's rank is uniform
    over n+1..n+t, so P(rank <= k) = clip((k - n) / t, 0, 1). Returns (Q,) probabilities."""
    rows = np.arange(len(targets))
    target_d = distances[rows, targets][:, None]
    mask = np.ones(distances.shape, dtype=bool) if within is None else within
    nearer = ((distances < target_d) & mask).sum(axis=1)
    tied = ((distances == target_d) & mask).sum(axis=1)
    return np.clip((k - nearer) / tied, 0.0, 1.0)


def instance_accuracy(
    distances: np.ndarray,
    targets: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    ks: tuple[int, ...] = (1, 10),
) -> dict[str, float]:
    """Where each query names its own gallery item (a sketch's source photo): tie-aware acc@k over the
    whole gallery and within the query's class, each with its chance level (k / items ranked)."""
    same_class = gallery_labels[None, :] == query_labels[:, None]
    class_sizes = same_class.sum(axis=1)
    out: dict[str, float] = {"n_queries": len(targets)}
    for k in ks:
        out[f"acc@{k}"] = float(rank_hit_probability(distances, targets, k).mean())
        out[f"acc@{k}_chance"] = min(1.0, k / distances.shape[1])
        out[f"class_acc@{k}"] = float(rank_hit_probability(distances, targets, k, same_class).mean())
        out[f"class_acc@{k}_chance"] = float(np.minimum(1.0, k / class_sizes).mean())
    return out


def code_statistics(packed: np.ndarray, labels: np.ndarray, bits: int) -> dict[str, float]:
    """How much of the code space a gallery uses: distinct codes, the share of same-class pairs with
    identical codes (Hamming 0), and per-bit balance (share of photos with each bit on)."""
    distinct = len({row.tobytes() for row in packed})
    hamming = hamming_matrix(packed, packed)
    same = labels[None, :] == labels[:, None]
    np.fill_diagonal(same, False)
    on = unpack_bits(packed, bits).mean(axis=0)
    return {
        "n_codes": len(packed),
        "distinct_codes": int(distinct),
        "same_class_pairs_at_hamming_0": float((hamming[same] == 0).mean()) if same.any() else 0.0,
        "same_class_mean_hamming": float(hamming[same].mean()) if same.any() else 0.0,
        "bit_on_share_min": float(on.min()),
        "bit_on_share_max": float(on.max()),
        "bit_balance_mean_abs_deviation": float(np.abs(on - 0.5).mean()),
    }


def subclass_precision(
    distances: np.ndarray, labels: np.ndarray, subclasses: np.ndarray, k: int = 10
) -> dict[str, float]:
    """ "More like this" among a class: for every item of a class whose items span more than one subclass
    (an ImageNet synset within a Sketchy class), rank the *other* items of its class by ``distances``
    (G, G) and take the tie-aware precision@k of its own subclass. Reported with its chance level (a
    random order) and the best any ranking can reach (k nearest all of its subclass, as far as they go)."""
    precision, chance, best = [], [], []
    classes_used = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(np.unique(subclasses[members])) < 2:
            continue
        classes_used += 1
        cut = min(k, len(members) - 1)
        for i in members:
            others = members[members != i]
            relevant = subclasses[others] == subclasses[i]
            precision.append(query_scores(distances[i, others], relevant, p_at=(cut,)).precision_at[cut])
            chance.append(relevant.mean())
            best.append(min(int(relevant.sum()), cut) / cut)
    if not precision:
        return {"n_items": 0, "n_classes": 0}
    p, c = float(np.mean(precision)), float(np.mean(chance))
    return {
        "n_items": len(precision),
        "n_classes": classes_used,
        f"precision@{k}": p,
        f"precision@{k}_chance": c,
        f"precision@{k}_best_possible": float(np.mean(best)),
        "ratio_to_chance": p / c if c else float("nan"),
    }
