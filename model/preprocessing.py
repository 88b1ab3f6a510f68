"""Turning sketches, photos and edge maps into network inputs.

One function per modality, used by training, evaluation, indexing and the server alike, so what the
network sees at search time is what it saw in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFilter, ImageOps

if TYPE_CHECKING:  # torch is imported where tensors are made: serving without PyTorch uses the arrays
    import torch

MEAN, STD = 0.5, 0.5  # EfficientNet-Lite expects inputs in [-1, 1]
STROKE_THRESHOLD = 200  # a grey level below this (on a white background) counts as a stroke
SKETCH_MARGIN = 0.06  # Sketchy sketches leave roughly this much white around the object


class BlankSketchError(ValueError):
    """The sketch has no strokes to search with."""


@dataclass
class SketchAugment:
    """Random changes that mimic how differently people draw: stroke width, position, scale, mirror."""

    thicken_prob: float = 0.4
    margin_range: tuple[float, float] = (0.0, 0.25)
    shift: float = 0.08
    flip_prob: float = 0.5
    # Drawings from memory miss parts and wobble: drop whole stroke pieces (connected components) and
    # bend the drawing with a smooth random displacement. Off by default (training option).
    stroke_dropout: float = 0.0  # chance to drop each stroke piece (at most half of the ink goes)
    jitter: float = 0.0  # displacement amplitude as a share of the drawing's size


def drop_strokes(gray: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """Whiten random connected stroke pieces, keeping at least half of the ink and one piece."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (gray < STROKE_THRESHOLD).astype(np.uint8), connectivity=8
    )
    if count <= 2:  # background + one piece: nothing to drop
        return gray
    ink = stats[1:, cv2.CC_STAT_AREA]
    drop = np.flatnonzero(rng.random(count - 1) < prob)
    drop = drop[np.cumsum(ink[drop]) <= ink.sum() / 2]  # never more than half the ink
    if len(drop) == count - 1:
        drop = drop[:-1]
    out = gray.copy()
    out[np.isin(labels, drop + 1)] = 255
    return out


def wobble(gray: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random displacement (a 4x4 grid of offsets, upsampled): lines bend as in a quick drawing."""
    import cv2

    h, w = gray.shape
    scale = amplitude * max(h, w)
    dx = cv2.resize(
        rng.uniform(-scale, scale, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    dy = cv2.resize(
        rng.uniform(-scale, scale, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        gray, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=255
    )


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Grayscale with transparency composited onto white (a web canvas is transparent where not drawn)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("L")


def sketch_to_dark_on_white(image: Image.Image) -> Image.Image:
    """Grayscale, strokes dark on a white background whatever the input's polarity."""
    gray = flatten_alpha(image)
    arr = np.asarray(gray)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    if np.median(border) < 128:  # light strokes on a dark background
        gray = ImageOps.invert(gray)
    return gray


def stroke_bbox(gray: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box of the strokes; raises BlankSketchError when there are none."""
    arr = np.asarray(gray)
    mask = arr < STROKE_THRESHOLD
    if mask.sum() < 3:
        raise BlankSketchError("the sketch is blank: draw some strokes first")
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _square_side(w: int, h: int, margin: float) -> int:
    return round(max(w, h) * (1 + 2 * margin)) + 1


def _pad_square(image: Image.Image, margin: float, shift: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    w, h = image.size
    side = _square_side(w, h, margin)
    canvas = Image.new("L", (side, side), 255)
    x = (side - w) // 2 + int(shift[0] * side)
    y = (side - h) // 2 + int(shift[1] * side)
    canvas.paste(image, (max(0, min(side - w, x)), max(0, min(side - h, y))))
    return canvas


def to_array(image: Image.Image) -> np.ndarray:
    """(3, H, W) float32 array normalised for the backbone; grayscale is repeated on three channels."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray((arr.transpose(2, 0, 1) - MEAN) / STD, dtype=np.float32)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """``to_array`` as a torch tensor (the same values: float32 arithmetic either way)."""
    import torch

    return torch.from_numpy(to_array(image))


def normalise_sketch(image: Image.Image, size: int, augment: SketchAugment | None = None) -> Image.Image:
    """Dark-on-white, cropped to the strokes, padded to a square, resized: a sketch drawn small in a
    corner of a large canvas ends up framed like a dataset sketch."""
    gray = sketch_to_dark_on_white(image)
    rng = random.random
    if augment is not None and (augment.stroke_dropout or augment.jitter):
        generator = np.random.default_rng(random.getrandbits(32))
        arr = np.asarray(gray)
        if augment.stroke_dropout:
            arr = drop_strokes(arr, augment.stroke_dropout, generator)
        if augment.jitter:
            arr = wobble(arr, augment.jitter, generator)
        gray = Image.fromarray(arr)
    if augment is not None and rng() < augment.thicken_prob:
        gray = gray.filter(ImageFilter.MinFilter(3))
    cropped = gray.crop(stroke_bbox(gray))
    if augment is None:
        square = _pad_square(cropped, SKETCH_MARGIN)
    else:
        lo, hi = augment.margin_range
        shift = ((rng() * 2 - 1) * augment.shift, (rng() * 2 - 1) * augment.shift)
        square = _pad_square(cropped, lo + (hi - lo) * rng(), shift)
        if rng() < augment.flip_prob:
            square = ImageOps.mirror(square)
    return square.resize((size, size), Image.Resampling.BILINEAR)


def sketch_frame(image: Image.Image) -> tuple[int, int, int]:
    """Where the network's square input lies in the sketch as drawn: (left, top, side) in its pixels
    (it may reach past the edges). Lets an attention map be laid back over the drawing."""
    left, top, right, bottom = stroke_bbox(sketch_to_dark_on_white(image))
    w, h = right - left, bottom - top
    side = _square_side(w, h, SKETCH_MARGIN)
    return left - (side - w) // 2, top - (side - h) // 2, side


def letterbox_content(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """The photo's own pixels inside its ``letterbox`` square: (left, top, right, bottom)."""
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (size - w) // 2, (size - h) // 2
    return left, top, left + w, top + h


def preprocess_sketch(image: Image.Image, size: int, augment: SketchAugment | None = None) -> torch.Tensor:
    return to_tensor(normalise_sketch(image, size, augment))


def sketch_array(image: Image.Image, size: int) -> np.ndarray:
    """``preprocess_sketch`` (no augmentation) as a NumPy array: the serving path without PyTorch."""
    return to_array(normalise_sketch(image, size))


def letterbox(image: Image.Image, size: int, fill: int | tuple[int, int, int]) -> Image.Image:
    """Resize keeping the aspect ratio so the longer side is ``size``, then pad to a square."""
    left, top, right, bottom = letterbox_content(*image.size, size)
    resized = image.resize((right - left, bottom - top), Image.Resampling.BILINEAR)
    canvas = Image.new(image.mode, (size, size), fill)
    canvas.paste(resized, (left, top))
    return canvas


def _photo_pair_images(
    photo: Image.Image, edge: Image.Image | None, size: int, augment: bool, mirror: bool | None = None
) -> tuple[Image.Image, Image.Image | None]:
    """Photo and its edge map get the same geometry, so the shared co-attention mask lines up on both.
    ``augment``: a random crop and, unless ``mirror`` decides it, a random mirror image."""
    photo = photo.convert("RGB")
    if edge is not None:
        edge = edge.convert("L")
        if edge.size != photo.size:
            edge = edge.resize(photo.size, Image.Resampling.BILINEAR)
    if augment:
        w, h = photo.size
        scale = random.uniform(0.75, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        x, y = random.randint(0, w - cw), random.randint(0, h - ch)
        box = (x, y, x + cw, y + ch)
        photo = photo.crop(box)
        edge = edge.crop(box) if edge is not None else None
        if (random.random() < 0.5) if mirror is None else mirror:
            photo = ImageOps.mirror(photo)
            edge = ImageOps.mirror(edge) if edge is not None else None
    return letterbox(photo, size, (255, 255, 255)), letterbox(edge, size, 255) if edge is not None else None


def preprocess_photo_pair(
    photo: Image.Image,
    edge: Image.Image | None,
    size: int,
    augment: bool = False,
    mirror: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Photo and its edge map get the same geometry, so the shared co-attention mask lines up on both.
    ``augment``: a random crop and, unless ``mirror`` decides it, a random mirror image."""
    photo_image, edge_image = _photo_pair_images(photo, edge, size, augment, mirror)
    return to_tensor(photo_image), to_tensor(edge_image) if edge_image is not None else None


def photo_pair_arrays(
    photo: Image.Image, edge: Image.Image | None, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """``preprocess_photo_pair`` (no augmentation) as NumPy arrays: the serving path without PyTorch."""
    photo_image, edge_image = _photo_pair_images(photo, edge, size, False)
    return to_array(photo_image), to_array(edge_image) if edge_image is not None else None
