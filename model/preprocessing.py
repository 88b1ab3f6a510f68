"""Turning sketches, photos and edge maps into network inputs.

One function per modality, used by training, evaluation, indexing and the server alike, so what the
network sees at search time is what it saw in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

from model.imageio import high_bit_depth, to_rgb, unit_range

if TYPE_CHECKING:  # torch is imported where tensors are made: serving without PyTorch uses the arrays
    import torch

MEAN, STD = 0.5, 0.5  # EfficientNet-Lite expects inputs in [-1, 1]
STROKE_THRESHOLD = 200  # a grey level below this (on a white background) counts as a stroke
SKETCH_MARGIN = 0.06  # Sketchy sketches leave roughly this much white around the object


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


# -- sketch pixels: ink found relative to the paper --------------------------------------------------
INK_FLOOR = 0.03  # weakest difference from the paper (0..1) that counts as ink on clean digital paper
NOISE_SIGMAS = 5.0  # on noisy (photographed, scanned) paper, ink differs from it by more than this
# How dark a drawing's strong strokes (its 95th percentile of ink, 0..1) are made: as dark as the
# training sketches they are nearest to. TU-Berlin's grey strokes measure 0.47-0.65 (95% of them),
# Sketchy's 1.0 (benchmarks/sketch_inputs.py): strokes in GREY_INK are left as drawn, fainter or
# darker ones made black (a light pencil, a pale colour, a photographed page), with ramps of RAMP_INK
# between, so nothing jumps.
GREY_INK, RAMP_INK = (0.45, 0.7), 0.1
FRAME_SHARE = 0.9  # a row or column this much ink, at an edge, is a frame or a band: no stroke is
FRAME_DEPTH = 0.3  # frames and bands are cleared this far in from each edge at most (share of the side)
FRAME_GAP = 0.05  # paper between the edge and a frame: at most this share of the side
# px: an image, or a drawing in it, smaller than these across has too little for the network to see
# (the smallest of the 5,925 Sketchy and TU-Berlin sketches spans 27 px: benchmarks/sketch_inputs.py)
MIN_SKETCH_SIDE, MIN_DRAWING_SIDE = 32, 16
_LIGHT_CONTENT = 0.85  # opaque content this light on a transparent canvas is light ink: laid on black
_PAPER_SAMPLES = 2048  # pixels sampled to fit the paper's shading
_MIN_ROOM = 0.1  # ink contrast is measured against at least this much paper brightness (or headroom)


class BlankSketchError(ValueError):
    """The sketch has nothing to search with; ``code`` says why, the message says it for a person."""

    code = "blank_sketch"


class SketchTooSmall(BlankSketchError):
    """The drawing (or the whole image) is too small for the network to see anything in it."""

    code = "sketch_too_small"


def _levels(image: Image.Image) -> np.ndarray:
    """(H, W, C), C = 1 for grey, 3 for colour, transparency composited away: every mode and bit depth
    Pillow reads, as uint8 levels from 8-bit sources, as float32 in 0..1 from higher ones (scaled,
    never clipped: 16-bit grey by 65535). ``_unit`` scales both alike. 8-bit work stays in Pillow,
    which is several times faster than numpy on a 2048x2048 canvas."""
    if high_bit_depth(image):
        values = unit_range(image)
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):  # a 16-bit PNG's tRNS: one grey level is see-through
            values = np.where(np.asarray(image) == transparent, np.float32(1.0), values)
        return values[..., None]
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        lowest_alpha = rgba.getchannel("A").getextrema()[0]
        if isinstance(lowest_alpha, int) and lowest_alpha < 253:  # some of it is see-through
            level = _background(rgba)
            rgba = Image.alpha_composite(Image.new("RGBA", rgba.size, (level, level, level, 255)), rgba)
        image = rgba.convert("RGB")
    elif image.mode not in ("1", "L"):
        image = image.convert("RGB")
    if image.mode == "RGB" and _grey(image):
        image = image.convert("L")  # grey stored as colour: one channel is a third of the work
    levels = np.asarray(image.convert("L") if image.mode == "1" else image)
    return levels[..., None] if levels.ndim == 2 else levels


def _unit(levels: np.ndarray) -> np.ndarray:
    """``_levels``' values (or any part of them) as float32 in 0..1: 8-bit levels divided by 255."""
    if levels.dtype != np.uint8:
        return levels
    return np.divide(levels, np.float32(255.0), dtype=np.float32)  # cast and scale in one pass


_GREY_UNIT = _unit(np.arange(256, dtype=np.uint8).reshape(1, 256, 1))  # every 8-bit grey level, as pixels


def _grey(rgb: Image.Image) -> bool:
    r, g, b = rgb.split()
    return ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(g, b).getbbox() is None


def _background(rgba: Image.Image) -> int:
    """What transparency is laid on: white, unless light strokes were drawn on a mostly transparent
    canvas (white chalk on a see-through layer), which go on black to stay visible."""
    small = np.asarray(rgba.reduce(max(1, max(rgba.size) // 256)))
    red, green, blue, alpha = (small[..., i].astype(np.float32) / 255.0 for i in range(4))
    weight = float(alpha.sum())
    # (red + green + blue) / 3 is the channels' mean, summed in the same order; a third of the time
    light = weight > 0 and float(((red + green + blue) / 3 * alpha).sum()) / weight > _LIGHT_CONTENT
    return 0 if light and float((alpha < 0.5).mean()) > 0.5 else 255


def _median(values: np.ndarray) -> np.ndarray:
    """np.median along axis 0 (the same values: the middle element, or the mean of the middle two), at
    a fraction of its cost on the few thousand values a sketch has: two partitions, no generic setup."""
    n = len(values)
    if n % 2:
        return np.partition(values, n // 2, axis=0)[n // 2]
    middle = np.partition(values, (n // 2 - 1, n // 2), axis=0)
    return (middle[n // 2 - 1] + middle[n // 2]) / 2


def _ranks(n: int, q: float) -> tuple[int, int, float]:
    """NumPy's default ('linear', Hyndman & Fan's 7th) percentile of n values: the order statistics
    either side of (n - 1) q / 100, and the weight of the upper one."""
    position = (n - 1) * (q / 100)
    low = int(position)
    return low, min(low + 1, n - 1), position - low


def _lerp(a: np.floating, b: np.floating, t: float) -> float:
    """Interpolated as NumPy's _lerp does, so the value is np.percentile's to the last bit."""
    return float(b - (b - a) * (1 - t)) if t >= 0.5 else float(a + (b - a) * t)


def _percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) for a 1-D array: two partitions, none of its generic set-up."""
    low, high, t = _ranks(len(values), q)
    ordered = np.partition(values, (low, high))
    return _lerp(ordered[low], ordered[high], t)


def _percentile_counted(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """``_percentile`` of an array that holds ``values[i]`` ``counts[i]`` times."""
    low, high, t = _ranks(int(counts.sum()), q)
    order = np.argsort(values, kind="stable")
    reached = np.cumsum(counts[order])  # how many values are at most each of them

    def nth(k: int) -> np.floating:
        return values[order[int(np.searchsorted(reached, k, side="right"))]]

    return _lerp(nth(low), nth(high), t)


def _paper(pixels: np.ndarray) -> np.ndarray:
    """The paper's colour at every pixel: a quadratic surface per channel fitted to sampled pixels,
    strokes left out as outliers, so grey, tinted, shadowed or unevenly lit paper (a photographed page)
    is paper everywhere. The paper is what most of the image is, dark or light. ``pixels``: from
    ``_levels``, or scaled by ``_unit``. Returns (H, W, C) float32 in 0..1, or (1, 1, C) for flat paper."""
    h, w, c = pixels.shape
    step = max(1, int(np.sqrt(h * w / _PAPER_SAMPLES)))
    ys, xs = np.arange(0, h, step), np.arange(0, w, step)
    samples = _unit(pixels[::step, ::step]).reshape(-1, c).astype(np.float64)  # the rows ys, columns xs
    level = _median(samples)
    if (np.abs(samples - level).max(axis=1) <= 1 / 255).mean() > 0.5:  # flat paper: a digital drawing
        return level.astype(np.float32).reshape(1, 1, c)
    v, u = np.meshgrid(ys / max(h - 1, 1) * 2 - 1, xs / max(w - 1, 1) * 2 - 1, indexing="ij")
    terms = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1).reshape(-1, 6)
    coef = np.zeros((6, c))
    coef[0] = level
    keep = np.ones(len(samples), bool)
    for _ in range(4):
        residual = np.sqrt(((samples - terms @ coef) ** 2).mean(axis=1))
        spread = 1.4826 * float(np.median(residual[keep])) if keep.any() else 0.0
        keep = residual <= max(3.0 * spread, INK_FLOOR)
        if keep.sum() < 6:
            break
        kept = terms[keep]
        coef = np.linalg.solve(kept.T @ kept + 1e-9 * np.eye(6), kept.T @ samples[keep])
    cols = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    rows = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
    k = coef.astype(np.float32)
    return (k[0] + k[1] * cols + k[3] * cols * cols) + (k[2] * rows + k[5] * rows * rows) + k[4] * rows * cols


def _noise(pixels: np.ndarray) -> float:
    """The paper's pixel noise (standard deviation, 0..1) from neighbouring differences: strokes and
    shading are too rare or too smooth to move their median. About 65,000 pairs are looked at."""
    h, w = pixels.shape[:2]
    if w < 2:
        return 0.0
    rows = pixels[:: max(1, h // 256)]
    x = np.arange(0, w - 1, max(1, (w * len(rows)) // 65536))
    diffs = np.abs(rows[:, x + 1] - rows[:, x]).max(axis=-1)
    return float(np.median(diffs)) / (0.6745 * np.sqrt(2))


def _clear_frames(mask: np.ndarray) -> list[tuple[int | slice, int | slice]]:
    """Frames, borders and scanner bands taken out of the ink ``mask`` in place, and returned as the
    lines (index tuples) the caller sets to paper: from each edge inward, rows (then columns) that are
    nearly all ink, past a thin paper margin, until the drawing begins. A drawn rectangle is no frame:
    its sides do not span the image, or do not lie at its edge. Shares are taken inside the frame found
    so far, so a frame's sides count without its top and bottom."""
    cleared: list[tuple[int | slice, int | slice]] = []
    inside = [[0, mask.shape[0]], [0, mask.shape[1]]]  # rows, columns not yet taken by a frame
    for round_ in range(2):  # a frame's top and bottom first, then its sides; again for a frame in a frame
        if round_ and not cleared:
            return cleared  # the first round found no frame: the second would read the same lines again
        for axis in (0, 1):
            (r0, r1), (c0, c1) = inside
            if r1 <= r0 or c1 <= c0:
                continue  # frames took everything
            lo, n = inside[axis][0], (r1 - r0 if axis == 0 else c1 - c0)
            depth, gap = max(1, int(n * FRAME_DEPTH)), max(2, int(n * FRAME_GAP))
            share = _line_shares(mask[r0:r1, c0:c1], axis)
            for end, order in ((0, range(depth)), (1, range(n - 1, n - 1 - depth, -1))):
                for steps, i in enumerate(order):
                    if share[i] >= FRAME_SHARE:
                        index = (lo + i, slice(None)) if axis == 0 else (slice(None), lo + i)
                        cleared.append(index)
                        mask[index] = False
                        inside[axis][end] = lo + i + 1 if end == 0 else lo + i
                    elif share[i] > 0.01 or steps >= gap:
                        break  # the drawing begins, or paper too wide for a margin
    return cleared


def _line_shares(mask: np.ndarray, axis: int) -> list[float]:
    """The ink share of every row (axis 0) or column (axis 1) of ``mask``. OpenCV's sums read the whole
    mask faster than NumPy reads the few lines near its edges; each share is the same float64 as
    ``mask.mean`` gives."""
    import cv2

    counts = cv2.reduce(mask.view(np.uint8), 1 - axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    return (counts / mask.shape[1 - axis]).tolist()


def _strong_target(strong: float) -> float:
    """How dark a drawing's strong strokes (``strong``, 0..1) are made; see GREY_INK."""
    low, high = GREY_INK
    if low <= strong <= high:
        return strong
    if strong < low:  # faint: black below low - RAMP_INK
        return min(1.0, low + (1.0 - low) * (low - strong) / RAMP_INK)
    return min(1.0, high + (1.0 - high) * (strong - high) / RAMP_INK)


def ink_map(image: Image.Image) -> np.ndarray:
    """How much ink each pixel holds, (H, W) float32 in 0..1, from any sketch Pillow reads.

    Ink is what differs from the paper, whatever colours the two have: black on white, pencil grey,
    light or coloured ink, grey or shadowed or photographed paper, chalk on a blackboard (polarity
    comes from what most of the image is, not from its border). The contrast is stretched so the
    drawing's own strong strokes are full ink; frames and edge bands are removed."""
    return _ink(_levels(image))


def _ink(levels: np.ndarray, lookup: bool = True) -> np.ndarray:
    """``ink_map`` of ``_levels``' output; ``lookup``: 8-bit grey on flat paper goes through the levels'
    table (``_grey_ink``, the same values faster), else every pixel is worked out."""
    paper = _paper(levels)
    flat = paper.shape[:2] == (1, 1)
    pixels = None if flat else _unit(levels)
    # Flat paper (one level: a digital drawing) has no pixel noise by definition; measuring it costs a
    # third of a small sketch's preprocessing.
    noise = 0.0 if pixels is None else _noise(pixels)
    # Ink darker than the paper (pen on paper) or lighter (chalk on a board): whichever most of the
    # marks are. Ink then takes away a share of the light the paper has (or of the room it leaves),
    # which stays the same across a shadow, where plain differences fade.
    sample = _unit(levels[::3, ::3]) - (paper if flat else paper[::3, ::3])
    marked = np.abs(sample).max(axis=-1) > max(INK_FLOOR, NOISE_SIGMAS * noise)
    dark = float(sample[marked].sum()) <= 0
    room = np.maximum(paper if dark else 1.0 - paper, np.float32(_MIN_ROOM))
    floor = max(INK_FLOOR, NOISE_SIGMAS * noise / float(np.median(room)) if noise else 0.0)
    if lookup and pixels is None and levels.dtype == np.uint8 and levels.shape[-1] == 1:
        # 8-bit grey on flat paper (a digital drawing, the common case): every pixel's ink is a function
        # of its grey level, so each step below runs on the 256 levels and maps back with one lookup.
        return _grey_ink(levels[..., 0], _relative_ink(_GREY_UNIT, paper, room, dark)[0], floor)
    relative = _relative_ink(_unit(levels) if pixels is None else pixels, paper, room, dark)
    mask = relative > floor
    for line in _clear_frames(mask):
        relative[line] = 0.0
    if np.count_nonzero(mask) < 3:
        return np.zeros(relative.shape, np.float32)
    strong = max(_percentile(relative[mask], 95), 2 * floor)
    return _stretched(relative, floor, strong)


def _relative_ink(pixels: np.ndarray, paper: np.ndarray, room: np.ndarray, dark: bool) -> np.ndarray:
    """The share of the paper's light (or of the room it leaves) each pixel's ink takes away, (...) from
    (..., C) pixels: the strongest channel."""
    relative = np.subtract(paper, pixels) if dark else np.subtract(pixels, paper)
    np.maximum(relative, 0.0, out=relative)
    relative /= room
    return relative.max(axis=-1) if relative.shape[-1] > 1 else relative[..., 0]  # any channel


def _stretched(relative: np.ndarray, floor: float, strong: float) -> np.ndarray:
    """``relative`` ink (in place) with the drawing's strong strokes made as dark as ``_strong_target``
    says, noise below ``floor`` faded out, float32 in 0..1."""
    ramp = relative - floor / 2  # noise fades out over floor/2..floor, never steps
    ramp *= 2 / floor
    np.clip(ramp, 0.0, 1.0, out=ramp)
    relative *= _strong_target(strong) / strong
    np.clip(relative, 0.0, 1.0, out=relative)
    relative *= ramp
    return relative.astype(np.float32, copy=False)


def _grey_ink(grey: np.ndarray, relative: np.ndarray, floor: float) -> np.ndarray:
    """``ink_map`` of 8-bit grey levels (H, W) whose 256 levels have ``relative`` ink: the same steps
    as for any pixels, on the levels' table, mapped back by OpenCV's lookup (bit for bit the same
    values, about twice as fast on a dataset sketch)."""
    import cv2

    mask = cv2.LUT(grey, (relative > floor).view(np.uint8)).view(bool)
    lines = _clear_frames(mask)
    if np.count_nonzero(mask) < 3:
        return np.zeros(grey.shape, np.float32)
    counts = np.bincount(grey[mask], minlength=256)
    strong = max(_percentile_counted(relative, counts, 95), 2 * floor)
    ink = cv2.LUT(grey, _stretched(relative.copy(), floor, strong))
    for line in lines:
        ink[line] = 0.0
    return ink


def sketch_to_dark_on_white(image: Image.Image, ink: np.ndarray | None = None) -> Image.Image:
    """Grayscale, strokes dark on a white background, whatever the input's colours, polarity, bit
    depth or paper (see ``ink_map``; ``ink`` is the image's own ink map when the caller has it)."""
    return Image.fromarray(_dark_on_white_levels(image, ink), "L")


def _dark_on_white_levels(image: Image.Image, ink: np.ndarray | None) -> np.ndarray:
    """``sketch_to_dark_on_white``'s grey levels, (H, W) uint8."""
    ink = ink_map(image) if ink is None else ink
    paper = np.subtract(np.float32(1.0), ink, dtype=np.float32)  # in place from here: half the time
    paper *= np.float32(255.0)
    return _rounded_levels(paper)


def _rounded_levels(values: np.ndarray) -> np.ndarray:
    """float32 values in 0..255 rounded half to even, as uint8: ``np.rint(values).astype(np.uint8)``
    to the last bit (every float32 in that range was checked), in one pass instead of two. Values
    outside 0..255 saturate (NumPy's cast would wrap); ``_dark_on_white_levels``' never are."""
    import cv2

    if not values.size:  # OpenCV answers None for an empty array
        return np.zeros(values.shape, np.uint8)
    return cv2.convertScaleAbs(values)


def stroke_bbox(gray: Image.Image | np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the strokes of a dark-on-white image; raises BlankSketchError when there are
    none. A few stray pixels apart from the drawing (noise, dust) do not stretch it."""
    import cv2

    mask = (np.asarray(gray) < STROKE_THRESHOLD).view(np.uint8)
    # Strokes per column and per row; OpenCV's sums are several times faster than NumPy's on booleans.
    columns = cv2.reduce(mask, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = cv2.reduce(mask, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    total = int(columns.sum())
    if total < 3:
        raise BlankSketchError("the sketch is blank: draw some strokes first")
    stray = max(2, total // 1000)

    def span(counts: np.ndarray) -> tuple[int, int]:
        """First and last index with strokes, skipping specks cut off from the rest by paper."""
        found = np.flatnonzero(counts)
        starts = np.flatnonzero(np.diff(found) > 1) + 1  # where each piece after the first begins
        if not len(starts):  # one piece (the common case): nothing to skip
            return int(found[0]), int(found[-1]) + 1
        bounds = [0, *starts.tolist(), len(found)]
        ink = np.add.reduceat(counts[found], bounds[:-1]).tolist()  # each piece's strokes
        first, last = 0, len(ink) - 1
        while first < last and ink[first] <= stray:
            first += 1
        while last > first and ink[last] <= stray:
            last -= 1
        return int(found[bounds[first]]), int(found[bounds[last + 1] - 1]) + 1

    left, right = span(columns)
    top, bottom = span(rows)
    return left, top, right, bottom


def check_drawing_size(image: Image.Image, bbox: tuple[int, int, int, int]) -> None:
    """SketchTooSmall for an image under MIN_SKETCH_SIDE pixels across, or a drawing in it under
    MIN_DRAWING_SIDE."""
    if max(image.size) < MIN_SKETCH_SIDE:
        raise SketchTooSmall(
            f"the sketch is only {image.width}x{image.height} pixels: draw it at least "
            f"{MIN_SKETCH_SIDE} pixels across (a few hundred work best)"
        )
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    if max(w, h) < MIN_DRAWING_SIDE:
        raise SketchTooSmall(
            f"the drawing covers only {w}x{h} pixels of the {image.width}x{image.height} sketch: "
            f"draw it larger, at least {MIN_DRAWING_SIDE} pixels across"
        )


# A drawing is lines: few of its inked pixels lie 2+ px inside a solid area at 256 px; a photo's do.
# Colour in many hues is a photo's too (no drawing in ink of one colour on paper of another). Flagged:
# 0.4% of the Sketchy and TU-Berlin sketches, 93% of Sketchy's photos (benchmarks/sketch_inputs.py).
PHOTO_SOLID_SHARE, PHOTO_COLOUR_SHARE, PHOTO_HUES = 0.15, 0.2, 3


PHOTO_CHECK_SIDE = 256  # looks_like_photo judges a copy of at most this many pixels across
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # no colour channels


def _photo_check_size(image: Image.Image) -> tuple[float, tuple[int, int]]:
    """The photo check's scale and (width, height): at most PHOTO_CHECK_SIDE across."""
    scale = PHOTO_CHECK_SIDE / max(image.size)
    return scale, (max(1, round(image.width * scale)), max(1, round(image.height * scale)))


def photo_check_ink(image: Image.Image, ink: np.ndarray) -> np.ndarray:
    """The image's ink map (``ink_map``) as the photo check reads it: area-averaged down to at most
    PHOTO_CHECK_SIDE across (the map itself when smaller). A 2048 px sketch's is 256 KB, not 17 MB:
    what a search keeps for the check while it waits for the network."""
    import cv2

    scale, size = _photo_check_size(image)
    # The map the network's input came from, area-averaged: a thumbnail's own map was most of the
    # photo check's time on the drawing page's 512 px canvases (page_canvas in
    # docs/benchmarks/sketch_inputs.json: their preparation is 1.8x faster without it and others).
    return cv2.resize(ink, size, interpolation=cv2.INTER_AREA) if scale < 1 else ink


def looks_like_photo(image: Image.Image, ink: np.ndarray | None = None) -> bool:
    """Whether a sketch upload looks like a photo rather than a drawing: solid areas of ink rather
    than lines, or colour in many hues. Judged at most 256 px across (a millisecond or two): ``ink``,
    the image's own ink map (computed when not given), area-averaged down to that size, and for the
    colours the image averaged down to it."""
    return photo_judged(image, photo_check_ink(image, ink_map(image) if ink is None else ink))


def photo_judged(image: Image.Image, small_ink: np.ndarray) -> bool:
    """``looks_like_photo`` from the image and its ``photo_check_ink``."""
    import cv2

    scale, size = _photo_check_size(image)
    inked = (small_ink > 0.3).astype(np.uint8)
    solid = cv2.erode(inked, np.ones((5, 5), np.uint8))
    if inked.any() and solid.sum() / inked.sum() > PHOTO_SOLID_SHARE:
        return True
    if image.mode in GREY_MODES:
        return False  # no colour to be in many hues
    rgb = to_rgb(image)
    small = rgb.resize(size, Image.Resampling.BOX) if scale < 1 else rgb
    hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
    coloured = (hsv[..., 1] > 0.25) & (hsv[..., 2] > 0.2)
    if coloured.mean() <= PHOTO_COLOUR_SHARE:
        return False
    hues = np.histogram(hsv[..., 0][coloured], bins=12, range=(0.0, 1.0))[0]
    return int((hues > 0.05 * coloured.sum()).sum()) >= PHOTO_HUES


def _square_side(w: int, h: int, margin: float) -> int:
    return round(max(w, h) * (1 + 2 * margin)) + 1


def _framed(
    gray: Image.Image,
    box: tuple[int, int, int, int],
    size: int,
    margin: float,
    shift: tuple[float, float] = (0.0, 0.0),
) -> Image.Image:
    """The strokes in ``box`` centred (and shifted) in a white square with ``margin`` round them, at
    ``size`` pixels. A square much larger than ``size`` is built from the strokes reduced first, so
    time and memory follow ``size``, not the square a long thin drawing would need at full size."""
    crop = gray.crop(box)
    w, h = crop.size
    side = _square_side(w, h, margin)
    x = (side - w) // 2 + int(shift[0] * side)
    y = (side - h) // 2 + int(shift[1] * side)
    factor = side // (4 * size)
    if factor >= 2:
        crop = crop.reduce(factor)
        w, h = crop.size
        side, x, y = max(w, h, round(side / factor)), round(x / factor), round(y / factor)
    canvas = Image.new("L", (side, side), 255)
    canvas.paste(crop, (max(0, min(side - w, x)), max(0, min(side - h, y))))
    return canvas.resize((size, size), Image.Resampling.BILINEAR)


def _grey_input() -> np.ndarray:
    """The network's input value of every 8-bit grey level: (level / 255 - MEAN) / STD in float32, the
    same arithmetic as for a colour image's pixels, looked up per pixel instead of worked out."""
    grey = np.divide(np.arange(256, dtype=np.uint8), np.float32(255.0), dtype=np.float32)
    grey -= np.float32(MEAN)
    grey /= np.float32(STD)
    return grey


_GREY_INPUT = _grey_input()


def to_array(image: Image.Image) -> np.ndarray:
    """(3, H, W) float32 array normalised for the backbone; grayscale is repeated on three channels."""
    if image.mode == "L":  # a sketch: one channel normalised, then repeated (the same values)
        import cv2

        levels = np.asarray(image)
        out = np.empty((3, *levels.shape), np.float32)
        if not levels.size:  # OpenCV answers None for an empty image
            return out
        grey = cv2.LUT(levels, _GREY_INPUT)
        out[:] = grey
        return out
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray((arr.transpose(2, 0, 1) - MEAN) / STD, dtype=np.float32)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """``to_array`` as a torch tensor (the same values: float32 arithmetic either way)."""
    import torch

    return torch.from_numpy(to_array(image))


def normalise_sketch(
    image: Image.Image, size: int, augment: SketchAugment | None = None, ink: np.ndarray | None = None
) -> Image.Image:
    """Dark-on-white, cropped to the strokes, framed in a square, resized: a sketch drawn small in a
    corner of a large canvas ends up framed like a dataset sketch. ``ink``: the image's ink map, when
    the caller has it already (the search checks the same map for a photo).

    Raises BlankSketchError without strokes, and (at search time, ``augment`` None) SketchTooSmall for
    a drawing under MIN_DRAWING_SIDE pixels across."""
    if augment is None and max(image.size) < MIN_SKETCH_SIDE:
        check_drawing_size(image, (0, 0, *image.size))  # too small to look for strokes in
    levels = _dark_on_white_levels(image, ink)
    if augment is None:  # the search's path: the strokes' box from the grey levels, no copy back out
        box = stroke_bbox(levels)
        check_drawing_size(image, box)
        return _framed(Image.fromarray(levels, "L"), box, size, SKETCH_MARGIN)
    rng = random.random
    if augment.stroke_dropout or augment.jitter:
        generator = np.random.default_rng(random.getrandbits(32))
        if augment.stroke_dropout:
            levels = drop_strokes(levels, augment.stroke_dropout, generator)
        if augment.jitter:
            levels = wobble(levels, augment.jitter, generator)
    gray = Image.fromarray(levels, "L")
    if rng() < augment.thicken_prob:
        gray = gray.filter(ImageFilter.MinFilter(3))
    box = stroke_bbox(gray)
    lo, hi = augment.margin_range
    shift = ((rng() * 2 - 1) * augment.shift, (rng() * 2 - 1) * augment.shift)
    square = _framed(gray, box, size, lo + (hi - lo) * rng(), shift)
    return ImageOps.mirror(square) if rng() < augment.flip_prob else square


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


def sketch_array(image: Image.Image, size: int, ink: np.ndarray | None = None) -> np.ndarray:
    """``preprocess_sketch`` (no augmentation) as a NumPy array: the serving path without PyTorch."""
    return to_array(normalise_sketch(image, size, ink=ink))


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
