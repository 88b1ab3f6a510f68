"""The CSCAN network (Yu & Zhang 2022): sketch branch with spatial attention, photo+edge branch with one
shared co-attention mask, fused high-level features, sigmoid hash heads and auxiliary classifiers."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from model.backbones import build_backbone
from model.config import ModelConfig


class SpatialAttention(nn.Module):
    """CBAM spatial attention: M = sigmoid(conv([mean_c(F); max_c(F)]))."""

    def __init__(self, kernel_size: int = 7, initial_mask: float = 0.9) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        # Start with a mask close to 1 everywhere: a random mask of ~0.5 would scale down (and scramble) the
        # pretrained features the high-level stages expect, and they would have to re-learn them first.
        nn.init.normal_(self.conv.weight, std=1e-3)
        assert self.conv.bias is not None
        nn.init.constant_(self.conv.bias, math.log(initial_mask / (1 - initial_mask)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([features.mean(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


def _channels_last(images: torch.Tensor) -> torch.Tensor:
    return images.contiguous(memory_format=torch.channels_last)


def _hash_head(in_features: int, hidden: int, bits: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, bits),
    )


class CSCAN(nn.Module):
    """Outputs continuous codes B' in (0, 1); binary codes are B' >= 0.5."""

    def __init__(self, config: ModelConfig, pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        photo = build_backbone(config.backbone, pretrained)
        sketch = build_backbone(config.backbone, pretrained)
        self.photo_low, self.photo_high = photo.low, photo.high
        self.sketch_low, self.sketch_high = sketch.low, sketch.high
        # Sketches and edge maps are both line drawings, so by default they share one backbone.
        if config.use_edge and not config.share_sketch_edge:
            self.edge_low, self.edge_high = copy.deepcopy(sketch.low), copy.deepcopy(sketch.high)
        channels = photo.high_channels
        self.sketch_attention = SpatialAttention() if config.use_attention else None
        self.co_attention = SpatialAttention() if config.use_attention else None
        fused_channels = channels * 2 if (config.use_edge and config.fusion == "concat") else channels
        self.sketch_hash = _hash_head(channels, config.hash_hidden, config.bits, config.dropout)
        self.photo_hash = _hash_head(fused_channels, config.hash_hidden, config.bits, config.dropout)
        self.sketch_classifier = nn.Linear(config.bits, config.num_classes)
        self.photo_classifier = nn.Linear(config.bits, config.num_classes)
        # Depthwise convolutions run 2-4x faster on CPUs in channels-last layout (measured on Lite0).
        self.to(memory_format=torch.channels_last)

    def _edge_parts(self) -> tuple[nn.Module, nn.Module]:
        if self.config.share_sketch_edge:
            return self.sketch_low, self.sketch_high
        return self.edge_low, self.edge_high

    def encode_sketch(self, sketch: torch.Tensor) -> torch.Tensor:
        low = self.sketch_low(_channels_last(sketch))
        if self.sketch_attention is not None:
            low = low * self.sketch_attention(low)
        return torch.sigmoid(self.sketch_hash(self.sketch_high(low)))

    def sketch_mask(self, sketch: torch.Tensor) -> torch.Tensor | None:
        """The sketch branch's spatial attention mask (N, 1, h, w); None without attention."""
        if self.sketch_attention is None:
            return None
        return self.sketch_attention(self.sketch_low(_channels_last(sketch)))

    def photo_mask(self, photo: torch.Tensor, edge: torch.Tensor | None) -> torch.Tensor | None:
        """The shared photo+edge co-attention mask (N, 1, h, w); None without attention."""
        if self.co_attention is None:
            return None
        low = self.photo_low(_channels_last(photo))
        if self.config.use_edge:
            if edge is None:
                raise ValueError("this model uses edge maps: pass the photo's edge map")
            low = torch.cat([low, self._edge_parts()[0](_channels_last(edge))], dim=1)
        return self.co_attention(low)

    def encode_photo(self, photo: torch.Tensor, edge: torch.Tensor | None) -> torch.Tensor:
        low_photo = self.photo_low(_channels_last(photo))
        if not self.config.use_edge:
            if self.co_attention is not None:
                low_photo = low_photo * self.co_attention(low_photo)
            return torch.sigmoid(self.photo_hash(self.photo_high(low_photo)))
        if edge is None:
            raise ValueError("this model uses edge maps: pass the photo's edge map")
        edge_low, edge_high = self._edge_parts()
        low_edge = edge_low(_channels_last(edge))
        if self.co_attention is not None:
            # One mask from both modalities, applied to both: edges show the photo where the object is.
            mask = self.co_attention(torch.cat([low_photo, low_edge], dim=1))
            low_photo, low_edge = low_photo * mask, low_edge * mask
        high_photo, high_edge = self.photo_high(low_photo), edge_high(low_edge)
        if self.config.fusion == "sum":
            fused = high_photo + high_edge
        else:
            fused = torch.cat([high_photo, high_edge], dim=1)
        return torch.sigmoid(self.photo_hash(fused))

    def forward(
        self, sketch: torch.Tensor, photo: torch.Tensor, edge: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        sketch_codes = self.encode_sketch(sketch)
        photo_codes = self.encode_photo(photo, edge)
        return {
            "sketch_codes": sketch_codes,
            "photo_codes": photo_codes,
            # Centring the codes is a reparametrisation of the linear classifier (same function class) that
            # keeps its inputs zero-mean: with raw sigmoid outputs near 0.5 it barely learns at first.
            "sketch_logits": self.sketch_classifier(2 * sketch_codes - 1),
            "photo_logits": self.photo_classifier(2 * photo_codes - 1),
        }
