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


def test_instance_triplet_hand_computed() -> None:
    from model.losses import instance_triplet_loss

    # two sketches of class 0 drawn from photos 7 and 9, one sketch of class 1
    sketch = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    photo = torch.tensor([[0.0, 0.5], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    ids = torch.tensor([7, 9, 4])
    own = torch.tensor([True, True, False])
    # anchor 0: d+ = 0.25, same-class other photo 1: d = 1 -> hinge max(0, 0.25 - 1 + 1) = 0.25
    # anchor 1: d+ = 1, other photo 0: d = 1 + 0.25 = 1.25 -> hinge max(0, 1 - 1.25 + 1) = 0.75
    # anchor 2 is not paired with its own photo, and photo 2 is another class for anchors 0 and 1
    loss = instance_triplet_loss(sketch, photo, labels, ids, own, margin=1.0)
    assert loss.item() == pytest.approx((0.25 + 0.75) / 2)
    # the same photo twice is never its own negative
    assert instance_triplet_loss(sketch, photo, labels, torch.tensor([7, 7, 4]), own, 1.0).item() == 0.0


def test_balance_is_zero_for_balanced_uncorrelated_bits_and_grows_with_collapse() -> None:
    from model.losses import balance_loss

    balanced = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert balance_loss(balanced).item() == pytest.approx(0.0, abs=1e-6)
    correlated = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    # the two bits correlate fully: bits x the mean squared correlation = 2 x 1
    assert balance_loss(correlated).item() == pytest.approx(2.0, abs=1e-4)
    constant = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert balance_loss(constant).item() >= 1.0  # bit 0 is always on: squared centred mean 1


def test_distillation_is_zero_when_the_student_agrees_and_positive_otherwise() -> None:
    from model.losses import distillation_loss

    teacher = torch.tensor([[2.0, 0.0, -1.0]])
    assert distillation_loss(teacher.clone(), teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(torch.zeros(1, 3), teacher, 2.0).item() > 0.0


def test_optional_terms_add_to_the_total_only_when_weighted() -> None:
    from model.losses import PairInfo

    torch.manual_seed(0)
    outputs = {
        "sketch_codes": torch.rand(4, 8),
        "photo_codes": torch.rand(4, 8),
        "sketch_logits": torch.zeros(4, 2),
        "photo_logits": torch.zeros(4, 2),
        "distill_logits": torch.zeros(4, 3),
        "teacher_logits": torch.tensor([[3.0, 0.0, 0.0]] * 4),
    }
    labels = torch.tensor([0, 0, 1, 1])
    pairs = PairInfo(torch.tensor([0, 1, 2, 3]), torch.tensor([True, True, True, True]))
    paper = cscan_loss(outputs, labels, LossWeights(), pairs=pairs)
    assert set(paper) == {"total", "triplet", "cls", "quant"}
    extended = cscan_loss(outputs, labels, LossWeights(instance=2.0, balance=0.5, distill=0.25), pairs=pairs)
    expected = (
        paper["total"] + 2 * extended["instance"] + 0.5 * extended["balance"] + 0.25 * extended["distill"]
    )
    assert extended["total"].item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="instance term"):
        cscan_loss(outputs, labels, LossWeights(instance=1.0))


def test_class_pull_weights_only_pairs_with_another_photo() -> None:
    from model.losses import PairInfo

    sketch = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    photo = torch.tensor([[0.0, 0.5], [1.0, 0.5]])  # d+ = 0.25 for both
    outputs = {"sketch_codes": sketch, "photo_codes": photo, "sketch_logits": torch.zeros(2, 2)}
    outputs["photo_logits"] = outputs["sketch_logits"]
    pairs = PairInfo(torch.tensor([0, 1]), torch.tensor([True, False]))
    weights = LossWeights(alpha=0.0, beta=0.0, margin=0.0, class_pull=0.0)
    # margins met, so only the pulls remain: 0.25 for the own pair, 0 for the other
    assert cscan_loss(outputs, torch.tensor([0, 1]), weights, pairs=pairs)["triplet"].item() == pytest.approx(
        0.125
    )
