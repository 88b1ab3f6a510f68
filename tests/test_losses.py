"""Loss terms against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from model.losses import LossWeights, cscan_loss, pick_negatives, quantisation_loss, quantise, triplet_loss


def test_triplet_hand_computed() -> None:
    a = torch.tensor([[0.0, 1.0]])
    p = torch.tensor([[0.0, 0.5]])  # d+ = 0.25
    n = torch.tensor([[1.0, 1.0]])  # d- = 1
    # max(0, 0.25 - 1 + 2) + 0.25 = 1.5
    assert triplet_loss(a, p, n, margin=2.0).item() == pytest.approx(1.5)
    # margin met: only the intra-class pull d+ remains
    assert triplet_loss(a, p, n, margin=0.5).item() == pytest.approx(0.25)


def test_quantisation_hand_computed() -> None:
    codes = torch.tensor([[0.1, 0.6, 0.5], [0.9, 0.2, 0.45]])
    assert quantise(codes).tolist() == [[0, 1, 1], [1, 0, 0]]
    # |0.1-0| + |0.6-1| + |0.5-1| = 1.0 ; |0.9-1| + |0.2-0| + |0.45-0| = 0.75 ; mean 0.875
    assert quantisation_loss(codes).item() == pytest.approx(0.875)


def test_full_loss_hand_computed() -> None:
    sketch = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    photo = torch.tensor([[0.0, 0.5], [1.0, 0.0]])
    labels = torch.tensor([0, 1])
    logits = torch.zeros(2, 2)
    outputs = {"sketch_codes": sketch, "photo_codes": photo, "sketch_logits": logits, "photo_logits": logits}
    weights = LossWeights(alpha=0.5, beta=0.1, margin=1.0)
    losses = cscan_loss(outputs, labels, weights, mining="all")
    # anchor 0: d+ = 0.25, negative photo 1: d- = 1 + 1 = 2 -> hinge max(0, 0.25 - 2 + 1) = 0
    # anchor 1: d+ = 0, negative photo 0: d- = 1 + 0.25 = 1.25 -> hinge 0 ; triplet = mean(0.25, 0) = 0.125
    assert losses["triplet"].item() == pytest.approx(0.125)
    assert losses["cls"].item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    # quantisation: sketch codes are exact (0), photo row 0 is 0.5 from 1 -> mean 0.25
    assert losses["quant"].item() == pytest.approx(0.25)
    expected = 0.125 + 0.5 * losses["cls"].item() + 0.1 * 0.25
    assert losses["total"].item() == pytest.approx(expected)


def test_negatives_come_from_other_classes() -> None:
    labels = torch.tensor([0, 0, 1, 2])
    sketch = torch.rand(4, 8)
    photo = torch.rand(4, 8)
    for mining in ("random", "hard"):
        anchors, negatives = pick_negatives(sketch, photo, labels, mining)  # type: ignore[arg-type]
        for a, neg in zip(anchors.tolist(), negatives, strict=True):
            j = next(i for i in range(4) if torch.equal(photo[i], neg))
            assert labels[j] != labels[a]
    # hard: the closest photo of another class
    anchors, negatives = pick_negatives(photo.clone(), photo, labels, "hard")
    assert not any(torch.equal(n, photo[a]) for a, n in zip(anchors.tolist(), negatives, strict=True))


def test_default_margin_is_quarter_of_bits() -> None:
    assert LossWeights().margin_for(64) == 16
    assert LossWeights(margin=3).margin_for(64) == 3
