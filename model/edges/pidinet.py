"""PiDiNet (Su et al., ICCV 2021), `carv4` with CDCM and CSAM, for weights the user supplies.

The authors' licence adds "just for research purpose, and commercial use should be contacted with
authors first", so this detector is never a default: pass its weights file explicitly. Pixel-difference
convolutions are folded into plain kernels when the weights load (cd: centre minus the kernel's sum;
ad: kernel minus its clockwise-rotated self; rd: a 5x5 kernel of outer-minus-inner ring weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from model.edges.base import EdgeDetector, EdgeWeightsMissing, render_lines, thin_edges

PDC_PATTERN = ("cd", "ad", "rd", "cv") * 4  # init block + 15 blocks
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fold_pdc(kind: str, weight: torch.Tensor) -> torch.Tensor:
    """The plain convolution kernel equal to a pixel-difference convolution with ``weight``."""
    out_c, in_c = weight.shape[:2]
    if kind == "cv":
        return weight
    if kind == "cd":
        folded = weight.clone()
        folded[:, :, 1, 1] -= weight.sum(dim=(2, 3))
        return folded
    if kind == "ad":
        flat = weight.reshape(out_c, in_c, 9)
        return (flat - flat[:, :, [3, 0, 1, 6, 4, 2, 7, 8, 5]]).reshape(weight.shape)
    if kind == "rd":
        flat = weight.reshape(out_c, in_c, 9)
        buffer = torch.zeros(out_c, in_c, 25, dtype=weight.dtype)
        buffer[:, :, [0, 2, 4, 10, 14, 20, 22, 24]] = flat[:, :, 1:]
        buffer[:, :, [6, 7, 8, 11, 13, 16, 17, 18]] = -flat[:, :, 1:]
        return buffer.reshape(out_c, in_c, 5, 5)
    raise ValueError(f"unknown pixel difference type {kind!r}")


class _Block(nn.Module):
    def __init__(self, inplane: int, outplane: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        if stride > 1:
            self.shortcut = nn.Conv2d(inplane, outplane, 1)
        self.conv1 = nn.Conv2d(inplane, inplane, 3, padding=1, groups=inplane, bias=False)
        self.conv2 = nn.Conv2d(inplane, outplane, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.max_pool2d(x, 2, 2)
        y = self.conv2(F.relu(self.conv1(x)))
        return y + (self.shortcut(x) if self.stride > 1 else x)


class _CDCM(nn.Module):
    def __init__(self, inplane: int, outplane: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplane, outplane, 1)
        for i, d in enumerate((5, 7, 9, 11), start=1):
            setattr(self, f"conv2_{i}", nn.Conv2d(outplane, outplane, 3, dilation=d, padding=d, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(x))
        return sum(getattr(self, f"conv2_{i}")(x) for i in range(1, 5))


class _CSAM(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class _MapReduce(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PiDiNet(nn.Module):
    """Returns the fused edge probability (B, 1, H, W)."""

    def __init__(self, width: int, dil: int) -> None:
        super().__init__()
        self.init_block = nn.Conv2d(3, width, 3, padding=1, bias=False)
        planes = [width, 2 * width, 4 * width, 4 * width]
        inplane = width
        for stage, (outplane, count) in enumerate(zip(planes, (3, 4, 4, 4), strict=True), start=1):
            for i in range(1, count + 1):
                stride = 2 if stage > 1 and i == 1 else 1
                setattr(self, f"block{stage}_{i}", _Block(inplane, outplane, stride))
                inplane = outplane
        self.dilations = nn.ModuleList(_CDCM(p, dil) for p in planes)
        self.attentions = nn.ModuleList(_CSAM(dil) for _ in planes)
        self.conv_reduces = nn.ModuleList(_MapReduce(dil) for _ in planes)
        self.classifier = nn.Conv2d(4, 1, 1)

    def _blocks(self) -> list[nn.Module]:
        return [m for name, m in self.named_children() if name.startswith("block")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x = self.init_block(x)
        stages = []
        for stage, count in enumerate((3, 4, 4, 4), start=1):
            for i in range(1, count + 1):
                x = getattr(self, f"block{stage}_{i}")(x)
            stages.append(x)
        maps = []
        for i, feat in enumerate(stages):
            edge = self.conv_reduces[i](self.attentions[i](self.dilations[i](feat)))
            maps.append(F.interpolate(edge, (h, w), mode="bilinear", align_corners=False))
        return torch.sigmoid(self.classifier(torch.cat(maps, dim=1)))

    def load_official(self, state: dict[str, torch.Tensor]) -> None:
        """Load an official checkpoint (keys prefixed `module.`), folding the pixel-difference convs."""
        state = {k.removeprefix("module."): v for k, v in state.items()}
        convs = ["init_block"] + [f"{n}.conv1" for n, _ in self.named_children() if n.startswith("block")]
        for name, kind in zip(convs, PDC_PATTERN, strict=True):
            key = f"{name}.weight"
            folded = fold_pdc(kind, state[key])
            module = cast(nn.Conv2d, self.get_submodule(name))
            if folded.shape[-1] == 5:  # rd: a 5x5 kernel, same output size with padding 2
                module.kernel_size, module.padding = (5, 5), (2, 2)
                module.weight = nn.Parameter(torch.empty_like(folded))
            state[key] = folded
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"not a PiDiNet carv4 checkpoint: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )


class PiDiNetEdgeDetector(EdgeDetector):
    name = "pidinet"

    def __init__(self, weights_path: str | Path, device: str = "cpu", size: int = 256) -> None:
        path = Path(weights_path)
        if path.is_dir():
            path = path / "table5_pidinet.pth"
        if not path.is_file():
            raise EdgeWeightsMissing(f"PiDiNet weights not found at {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        width = state["module.init_block.weight"].shape[0]
        dil = state["module.dilations.0.conv1.weight"].shape[0]
        self.net = PiDiNet(width, dil)
        self.net.load_official(state)
        self.device = torch.device(device)
        self.net.eval().to(self.device)
        self.size = size

    @torch.inference_mode()
    def detect_batch(self, photos: list[Image.Image]) -> list[Image.Image]:
        out = []
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        for photo in photos:
            rgb = photo.convert("RGB")
            scale = self.size / max(rgb.size)
            if scale < 1:
                rgb = rgb.resize(
                    (round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR
                )
            x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
            prob = self.net(((x - mean) / std).unsqueeze(0).to(self.device))[0, 0].cpu().numpy()
            drawing = render_lines(thin_edges(prob), thickness=2)
            out.append(drawing.resize(photo.size, Image.Resampling.BILINEAR))
        return out
