"""The CSCAN loss: triplet with an intra-class pull, auxiliary cross-entropy and a quantisation penalty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

NegativeMining = Literal["all", "random", "hard"]


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

    def margin_for(self, bits: int) -> float:
        return bits / 4 if self.margin is None else self.margin


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
    mining: NegativeMining,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negatives for each sketch from the batch's photos of other classes.

    Returns (anchor indices, negatives): "all" keeps every (anchor, negative) pair, "random" one random
    negative per anchor, "hard" the closest negative. Anchors without a negative in the batch are dropped.
    """
    different = labels.unsqueeze(0) != labels.unsqueeze(1)  # [anchor, photo]
    has_negative = different.any(dim=1)
    anchors = torch.nonzero(has_negative).squeeze(1)
    if mining == "all":
        pairs = torch.nonzero(different)
        return pairs[:, 0], photo_codes[pairs[:, 1]]
    if mining == "hard":
        dist = torch.cdist(sketch_codes.detach(), photo_codes.detach()).pow(2)
        dist = dist.masked_fill(~different, float("inf"))
        return anchors, photo_codes[dist[anchors].argmin(dim=1)]
    if mining == "random":
        scores = torch.rand(different.shape, generator=generator, device=labels.device)
        scores = scores.masked_fill(~different, -1.0)
        return anchors, photo_codes[scores[anchors].argmax(dim=1)]
    raise ValueError(f"unknown negative mining {mining!r}")


def cscan_loss(
    outputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    weights: LossWeights,
    mining: NegativeMining = "all",
) -> dict[str, torch.Tensor]:
    """L = L_triplet + alpha * L_cls + beta * L_q; the photo at position i is the positive of sketch i."""
    sketch_codes, photo_codes = outputs["sketch_codes"], outputs["photo_codes"]
    bits = sketch_codes.shape[1]
    anchor_idx, negatives = pick_negatives(sketch_codes, photo_codes, labels, mining)
    if anchor_idx.numel() == 0:
        trip = (sketch_codes - photo_codes).pow(2).sum(dim=-1).mean()
    elif mining == "all":
        d_pos = (sketch_codes - photo_codes).pow(2).sum(dim=-1)
        d_neg = (sketch_codes[anchor_idx] - negatives).pow(2).sum(dim=-1)
        hinge = F.relu(d_pos[anchor_idx] - d_neg + weights.margin_for(bits))
        per_anchor = torch.zeros_like(d_pos).index_add(0, anchor_idx, hinge)
        counts = torch.zeros_like(d_pos).index_add(0, anchor_idx, torch.ones_like(hinge)).clamp(min=1)
        trip = (per_anchor / counts + d_pos).mean()
    else:
        trip = triplet_loss(
            sketch_codes[anchor_idx], photo_codes[anchor_idx], negatives, weights.margin_for(bits)
        )
    cls = F.cross_entropy(outputs["sketch_logits"], labels) + F.cross_entropy(outputs["photo_logits"], labels)
    quant = quantisation_loss(sketch_codes) + quantisation_loss(photo_codes)
    total = trip + weights.alpha * cls + weights.beta * quant
    return {"total": total, "triplet": trip, "cls": cls, "quant": quant}
