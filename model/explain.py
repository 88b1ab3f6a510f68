"""What the network looked at: CSCAN's spatial attention masks, and small PNG heat maps of them.

The sketch branch's CBAM mask and the photo branch's shared photo+edge co-attention mask are the
network's own weighting of its low-level features (1/8 of the input's resolution): no gradients, no
extra model. Only the low-level stages run, so explaining costs a fraction of an encode.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # the heat maps need no PyTorch (serving image); the masks of a torch model do
    import torch

    from model.cscan import CSCAN

# A mask is drawn stretched over at least this span of attention values, so a nearly flat mask (the
# committed model's are flat to 1e-3) comes out as the even tint it is, not as amplified noise.
MIN_SPAN = 0.25
UNIFORM_SPAN = 0.05  # below this range a mask is reported as uniform
HEATMAP_SIDE = 48  # px of the longer side: the page scales it up smoothly; a few hundred bytes as PNG
# A dark-blue -> red -> yellow ramp; transparency grows with attention, so strokes stay visible beneath.
RAMP = np.array([[40, 60, 200], [220, 40, 40], [255, 220, 40]], dtype=np.float32)


def sketch_attention(model: CSCAN, sketches: torch.Tensor) -> np.ndarray | None:
    """(N, h, w) masks in (0, 1) for preprocessed sketches; None for a model built without attention."""
    import torch

    with torch.inference_mode():
        mask = model.sketch_mask(sketches.to(next(model.parameters()).device))
        return None if mask is None else mask[:, 0].float().cpu().numpy()


def co_attention(model: CSCAN, photos: torch.Tensor, edges: torch.Tensor | None) -> np.ndarray | None:
    """(N, h, w) shared photo+edge masks for preprocessed photos and edge maps; None without attention."""
    import torch

    with torch.inference_mode():
        device = next(model.parameters()).device
        mask = model.photo_mask(photos.to(device), edges.to(device) if edges is not None else None)
        return None if mask is None else mask[:, 0].float().cpu().numpy()


def heatmap_png(mask: np.ndarray, crop: tuple[float, float, float, float] | None = None) -> bytes:
    """An RGBA PNG of one mask, stretched to its own range but over at least MIN_SPAN (the response also
    gives the raw range).

    ``crop``: (left, top, right, bottom) as fractions of the mask, e.g. a photo's area inside its
    letterbox square, so the heat map lines up with the photo as shown."""
    hi = float(mask.max())
    lo = min(float(mask.min()), hi - MIN_SPAN)
    unit = (mask - lo) / (hi - lo)
    image = Image.fromarray((unit * 255).astype(np.uint8))
    if crop is not None:
        w, h = image.size
        image = image.resize((w * 8, h * 8), Image.Resampling.BILINEAR)
        left, top, right, bottom = crop
        image = image.crop(
            (round(left * w * 8), round(top * h * 8), round(right * w * 8), round(bottom * h * 8))
        )
    scale = HEATMAP_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    value = np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    low_half = np.clip(value * 2, 0, 1)[..., None]
    high_half = np.clip(value * 2 - 1, 0, 1)[..., None]
    rgb = np.where(
        value[..., None] < 0.5,
        RAMP[0] + (RAMP[1] - RAMP[0]) * low_half,
        RAMP[1] + (RAMP[2] - RAMP[1]) * high_half,
    )
    alpha = 10 + 150 * value
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG", optimize=True)
    return out.getvalue()
