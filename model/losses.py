"""The CSCAN loss: triplet with an intra-class pull, auxiliary cross-entropy and a quantisation penalty.

Beyond the paper, each off unless its weight is set (measured in the model card's ablations):

- an instance-level triplet: a sketch's own photo ranks above the other photos of its class (Sketchy names
  each sketch's source photo; "Sketch Me That Shoe", Yu et al. CVPR 2016, ranks within a category so);
- bit balance and decorrelation over the batch's codes (as in SPGH/OrthoHash-style hashing), so the
  64 bits spread instead of collapsing into one code per class;
- knowledge preservation (SAKE, Liu et al. ICCV 2019): the photo code keeps predicting what the ImageNet
  teacher sees in the photo, so photos of kinds never trained on still land near related kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.choices import NegativeMining, parse_choice


@dataclass
class LossWeights:
    """Defaults: the margin is a quarter of the code length, so classes end up >= bits/4 apart in Hamming
    distance. The triplet terms sum over all bits and their intra-class pull alone is minimised by
    collapsing every code to one point, so alpha=5 lets the classifiers (which carry the category signal)
    outweigh that pull early on: with alpha=1 the cross-entropy did not move in the first 30 steps, with
    alpha=5 it did. A small beta pushes outputs towards 0/1 without freezing the sigmoids early."""

    alpha: float = 5.0
    beta: float = 0.05
    margin: float | None = None  # None: bits / 4
    # Weight of the intra-class pull d+ when the positive is *another* photo of the sketch's class (not
    # its own): 1 is the paper. It pulls every photo of a class to one point, which is what collapses the
    # codes into class labels; the pull towards a sketch's own photo always keeps weight 1.
    class_pull: float = 1.0
    instance: float = 0.0  # weight of the instance-level triplet (0: the paper)
    instance_margin: float | None = None  # None: bits / 16
    balance: float = 0.0  # weight of bit balance + decorrelation (0: the paper)
    distill: float = 0.0  # weight of ImageNet knowledge preservation on the photo codes (0: the paper)
    distill_temperature: float = 2.0

    def margin_for(self, bits: int) -> float:
        return bits / 4 if self.margin is None else self.margin

    def instance_margin_for(self, bits: int) -> float:
        return bits / 16 if self.instance_margin is None else self.instance_margin


def quantise(codes: torch.Tensor) -> torch.Tensor:
    """f_q: the binary code a continuous code turns into."""
    return (codes >= 0.5).to(codes.dtype)


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float
) -> torch.Tensor:
    """Mean over triplets of max(0, d+ - d- + m) + d+, with d the squared L2 distance."""
    d_pos = (anchor - positive).pow(2).sum(dim=-1)
    d_neg = (anchor - negative).pow(2).sum(dim=-1)
    return (F.relu(d_pos - d_neg + margin) + d_pos).mean()


def quantisation_loss(codes: torch.Tensor) -> torch.Tensor:
    """Mean over samples of ||B' - f_q(B')||_1."""
    return (codes - quantise(codes).detach()).abs().sum(dim=-1).mean()


def pick_negatives(
    sketch_codes: torch.Tensor,
    photo_codes: torch.Tensor,
    labels: torch.Tensor,
    mining: NegativeMining | str,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negatives for each sketch from the batch's photos of other classes.

    Returns (anchor indices, negatives): "all" keeps every (anchor, negative) pair, "random" one random
    negative per anchor, "hard" the closest negative. Anchors without a negative in the batch are dropped.
    """
    mining = parse_choice(NegativeMining, mining, "negative mining")
    different = labels.unsqueeze(0) != labels.unsqueeze(1)  # [anchor, photo]
    has_negative = different.any(dim=1)
    anchors = torch.nonzero(has_negative).squeeze(1)
    if mining is NegativeMining.ALL:
        pairs = torch.nonzero(different)
        return pairs[:, 0], photo_codes[pairs[:, 1]]
    if mining is NegativeMining.HARD:
        dist = torch.cdist(sketch_codes.detach(), photo_codes.detach()).pow(2)
        dist = dist.masked_fill(~different, float("inf"))
        return anchors, photo_codes[dist[anchors].argmin(dim=1)]
    scores = torch.rand(different.shape, generator=generator, device=labels.device)
    scores = scores.masked_fill(~different, -1.0)
    return anchors, photo_codes[scores[anchors].argmax(dim=1)]


def instance_triplet_loss(
    sketch_codes: torch.Tensor,
    photo_codes: torch.Tensor,
    labels: torch.Tensor,
    photo_ids: torch.Tensor,
    own: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Mean of max(0, d(s_i, p_i) - d(s_i, p_j) + m) over anchors i whose positive p_i is the photo they
    were drawn from (``own``) and photos j of the same class that are another photo (``photo_ids`` differ).

    Shapes: codes (B, bits), labels/photo_ids/own (B,). Zero when the batch has no such pair."""
    dist = torch.cdist(sketch_codes, photo_codes).pow(2)  # [anchor, photo]
    d_pos = dist.diagonal()
    same_class = labels.unsqueeze(0) == labels.unsqueeze(1)
    other_photo = photo_ids.unsqueeze(0) != photo_ids.unsqueeze(1)
    valid = same_class & other_photo & own.unsqueeze(1)
    if not bool(valid.any()):
        return sketch_codes.sum() * 0.0
    hinge = F.relu(d_pos.unsqueeze(1) - dist + margin)
    return hinge[valid].mean()


def balance_loss(codes: torch.Tensor) -> torch.Tensor:
    """Bit balance plus decorrelation of codes (N, bits) in (0, 1): the sum over bits of the squared mean
    of the centred codes 2B' - 1, plus ``bits`` times the mean squared correlation between two bits. Both
    are 0 for codes whose bits are each on half the time and uncorrelated."""
    centred = 2 * codes - 1
    mean = centred.mean(dim=0)
    balance = mean.pow(2).sum()
    if codes.shape[0] < 2:
        return balance
    cov = (centred - mean).T @ (centred - mean) / (codes.shape[0] - 1)
    std = cov.diagonal().clamp(min=1e-6).sqrt()
    corr = cov / (std.unsqueeze(0) * std.unsqueeze(1))
    off = corr - torch.diag(corr.diagonal())
    return balance + off.pow(2).sum() / (codes.shape[1] - 1)


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) of softened class distributions, times T^2 (Hinton et al. 2015), as SAKE
    preserves the ImageNet teacher's knowledge. Logits (N, classes)."""
    t = temperature
    teacher = F.log_softmax(teacher_logits / t, dim=1)
    student = F.log_softmax(student_logits / t, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * t * t


@dataclass
class PairInfo:
    """Which photo each batch position holds, and whether it is the photo the sketch was drawn from."""

    photo_ids: torch.Tensor  # (B,) int: index of the photo in the training set
    own: torch.Tensor  # (B,) bool


def cscan_loss(
    outputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    weights: LossWeights,
    mining: NegativeMining | str = NegativeMining.ALL,
    pairs: PairInfo | None = None,
) -> dict[str, torch.Tensor]:
    """L = L_triplet + alpha * L_cls + beta * L_q (+ the optional terms of ``weights``); the photo at
    position i is the positive of sketch i. ``pairs`` is needed for the instance term and for a class
    pull other than 1; ``outputs["distill_logits"]`` and ``outputs["teacher_logits"]`` for distillation."""
    sketch_codes, photo_codes = outputs["sketch_codes"], outputs["photo_codes"]
    bits = sketch_codes.shape[1]
    anchor_idx, negatives = pick_negatives(sketch_codes, photo_codes, labels, mining)
    d_pos = (sketch_codes - photo_codes).pow(2).sum(dim=-1)
    pull = d_pos
    if pairs is not None and weights.class_pull != 1.0:
        pull = d_pos * torch.where(pairs.own, 1.0, weights.class_pull)
    if anchor_idx.numel() == 0:
        trip = pull.mean()
    elif mining == "all":
        d_neg = (sketch_codes[anchor_idx] - negatives).pow(2).sum(dim=-1)
        hinge = F.relu(d_pos[anchor_idx] - d_neg + weights.margin_for(bits))
        per_anchor = torch.zeros_like(d_pos).index_add(0, anchor_idx, hinge)
        counts = torch.zeros_like(d_pos).index_add(0, anchor_idx, torch.ones_like(hinge)).clamp(min=1)
        trip = (per_anchor / counts + pull).mean()
    else:
        d_neg = (sketch_codes[anchor_idx] - negatives).pow(2).sum(dim=-1)
        trip = (F.relu(d_pos[anchor_idx] - d_neg + weights.margin_for(bits)) + pull[anchor_idx]).mean()
    cls = F.cross_entropy(outputs["sketch_logits"], labels) + F.cross_entropy(outputs["photo_logits"], labels)
    quant = quantisation_loss(sketch_codes) + quantisation_loss(photo_codes)
    total = trip + weights.alpha * cls + weights.beta * quant
    losses = {"triplet": trip, "cls": cls, "quant": quant}
    if weights.instance:
        if pairs is None:
            raise ValueError("the instance term needs to know which photo each sketch was paired with")
        inst = instance_triplet_loss(
            sketch_codes,
            photo_codes,
            labels,
            pairs.photo_ids,
            pairs.own,
            weights.instance_margin_for(bits),
        )
        total = total + weights.instance * inst
        losses["instance"] = inst
    if weights.balance:
        bal = balance_loss(torch.cat([sketch_codes, photo_codes]))
        total = total + weights.balance * bal
        losses["balance"] = bal
    if weights.distill:
        dist = distillation_loss(
            outputs["distill_logits"], outputs["teacher_logits"], weights.distill_temperature
        )
        total = total + weights.distill * dist
        losses["distill"] = dist
    return {"total": total, **losses}
