"""Tie-aware AP equals the brute-force expectation over every order of tied items."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.metrics import precision_recall_curve, query_scores, retrieval_metrics


def ap_of_order(relevant_in_order: list[bool], k: int | None = None) -> float:
    hits, total, rel = 0, 0.0, sum(relevant_in_order)
    for rank, r in enumerate(relevant_in_order, start=1):
        if r:
            hits += 1
            if k is None or rank <= k:
                total += hits / rank
    if rel == 0:
        return 0.0
    return total / (rel if k is None else min(rel, k))


def brute_force(distances: list[int], relevant: list[bool], k: int) -> tuple[float, float, float]:
    """Average AP, AP@k and P@k over all orders consistent with the distances."""
    groups = [[i for i, d in enumerate(distances) if d == v] for v in sorted(set(distances))]
    aps, apks, pks = [], [], []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = [relevant[i] for group in perms for i in group]
        aps.append(ap_of_order(order))
        apks.append(ap_of_order(order, k))
        pks.append(sum(order[:k]) / k)
    return float(np.mean(aps)), float(np.mean(apks)), float(np.mean(pks))


def test_hand_computed_case() -> None:
    # distances [0, 1, 1] with relevance [0, 1, 0]: orders (x, R, n) or (x, n, R): AP = (1/2 + 1/3) / 2
    scores = query_scores(np.array([0, 1, 1]), np.array([False, True, False]), k=3, p_at=(1,))
    assert scores.ap == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert scores.precision_at[1] == 0.0


def test_no_ties_is_plain_ap() -> None:
    scores = query_scores(np.array([3, 1, 2, 0]), np.array([True, False, True, False]), k=4)
    # order by distance: idx3 (n), idx1 (n), idx2 (R), idx0 (R): AP = (1/3 + 2/4) / 2
    assert scores.ap == pytest.approx((1 / 3 + 2 / 4) / 2)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=7),
    st.integers(1, 7),
)
def test_matches_brute_force(pairs: list[tuple[int, bool]], k: int) -> None:
    distances = [d for d, _ in pairs]
    relevant = [r for _, r in pairs]
    expected_ap, expected_apk, expected_pk = brute_force(distances, relevant, k)
    scores = query_scores(np.array(distances), np.array(relevant), k=k, p_at=(k,))
    assert scores.ap == pytest.approx(expected_ap)
    assert scores.ap_at_k == pytest.approx(expected_apk)
    assert scores.precision_at[k] == pytest.approx(expected_pk)


def test_all_tied_gives_chance() -> None:
    # everything at one distance: expected AP is roughly the share of relevant items
    n, r = 200, 20
    relevant = np.zeros(n, dtype=bool)
    relevant[:r] = True
    ap = query_scores(np.zeros(n), relevant).ap
    assert abs(ap - r / n) < 0.03
    assert not math.isnan(ap)


def test_retrieval_metrics_and_pr_curve() -> None:
    distances = np.array([[0, 5, 9, 9], [9, 0, 5, 5]])
    q_labels, g_labels = np.array([0, 1]), np.array([0, 1, 0, 1])
    metrics = retrieval_metrics(distances, q_labels, g_labels, k=2)
    assert metrics["n_queries"] == 2 and metrics["n_gallery"] == 4
    assert metrics["P@10"] == pytest.approx(0.2)  # 2 relevant of a 10-cut (gallery has 4)
    precision, recall = precision_recall_curve(distances, q_labels, g_labels, bits=9)
    assert recall[-1] == pytest.approx(1.0)
    assert precision[0] == pytest.approx(1.0)  # each query's only photo at distance 0 is relevant
    assert precision[5] == pytest.approx((1 / 2 + 2 / 3) / 2)


def brute_force_hit(distances: list[int], target: int, k: int) -> float:
    """P(target in top k) over every order consistent with the distances."""
    orders = [
        order
        for order in itertools.permutations(range(len(distances)))
        if all(distances[a] <= distances[b] for a, b in itertools.pairwise(order))
    ]
    return sum(order.index(target) < k for order in orders) / len(orders)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=6), st.data())
def test_rank_hit_probability_is_the_expectation_over_tied_orders(distances: list[int], data) -> None:
    from training.metrics import rank_hit_probability

    target = data.draw(st.integers(0, len(distances) - 1))
    k = data.draw(st.integers(1, len(distances)))
    got = rank_hit_probability(np.array([distances]), np.array([target]), k)[0]
    assert got == pytest.approx(brute_force_hit(distances, target, k))


def test_instance_accuracy_within_the_class_and_chance() -> None:
    from training.metrics import instance_accuracy

    # gallery: photos 0, 1 of class 0; photos 2, 3 of class 1. Query of class 0 drawn from photo 1.
    distances = np.array([[1.0, 2.0, 0.0, 0.5]])
    out = instance_accuracy(distances, np.array([1]), np.array([0]), np.array([0, 0, 1, 1]), ks=(1, 2))
    assert out["acc@1"] == 0.0 and out["acc@2"] == 0.0  # three photos nearer over the whole gallery
    assert out["class_acc@1"] == 0.0 and out["class_acc@2"] == 1.0  # second of the two in its class
    assert out["class_acc@1_chance"] == 0.5 and out["acc@2_chance"] == 0.5


def test_code_statistics_counts_collapsed_codes() -> None:
    from model.hashing import pack_bits
    from training.metrics import code_statistics

    bits = np.array([[1] * 8, [1] * 8, [0] * 8, [0] * 4 + [1] * 4], dtype=np.uint8)
    stats = code_statistics(pack_bits(bits), np.array([0, 0, 1, 1]), 8)
    assert stats["distinct_codes"] == 3
    assert stats["same_class_pairs_at_hamming_0"] == 0.5  # (0, 1) identical, (2, 3) four bits apart
    assert stats["bit_on_share_min"] == 0.5 and stats["bit_on_share_max"] == 0.75


def test_subclass_precision_against_chance_and_the_best_possible() -> None:
    from training.metrics import subclass_precision

    labels = np.array([0, 0, 0, 0, 1, 1])
    synsets = np.array(["a", "a", "b", "b", "c", "c"])  # class 1 has one synset: left out
    # items 0,1 close, 2,3 close: a perfect ranking
    points = np.array([0.0, 0.1, 5.0, 5.1, 9.0, 9.1])
    distances = np.abs(points[:, None] - points[None, :])
    out = subclass_precision(distances, labels, synsets, k=1)
    assert out["n_items"] == 4 and out["n_classes"] == 1
    assert out["precision@1"] == 1.0 and out["precision@1_best_possible"] == 1.0
    assert out["precision@1_chance"] == pytest.approx(1 / 3)
    assert out["ratio_to_chance"] == pytest.approx(3.0)
