"""Sketch and photo preprocessing: what the server gets from a web canvas reads like a dataset sketch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from model.preprocessing import (
    SKETCH_MARGIN,
    BlankSketchError,
    SketchAugment,
    normalise_sketch,
    preprocess_photo_pair,
    preprocess_sketch,
    stroke_bbox,
)


def canvas_sketch(
    size: int = 400, box: tuple[int, int, int, int] = (20, 30, 120, 100), mode: str = "RGBA"
) -> Image.Image:
    """A rectangle drawn small in a corner of a transparent canvas, as the web page sends it."""
    bg = (0, 0, 0, 0) if mode == "RGBA" else 255
    image = Image.new(mode, (size, size), bg)
    ImageDraw.Draw(image).rectangle(box, outline=(0, 0, 0, 255) if mode == "RGBA" else 0, width=4)
    return image


def test_transparent_canvas_becomes_white_and_is_cropped() -> None:
    out = np.asarray(normalise_sketch(canvas_sketch(), 128))
    assert out.shape == (128, 128)
    assert out[64, 64] > 250  # inside the rectangle: white, not black from the transparent pixels
    # the stroke now spans nearly the whole image width (cropped, then a small margin)
    dark_cols = np.nonzero((out < 128).any(axis=0))[0]
    assert dark_cols[0] < 16 and dark_cols[-1] > 112


def test_position_on_canvas_does_not_matter() -> None:
    a = normalise_sketch(canvas_sketch(box=(20, 30, 120, 100)), 96)
    b = normalise_sketch(canvas_sketch(box=(250, 260, 350, 330)), 96)
    assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).mean() < 2


def test_white_on_black_is_inverted() -> None:
    image = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(image).line((20, 20, 180, 150), fill=255, width=3)
    out = np.asarray(normalise_sketch(image, 64))
    assert np.median(out) == 255 and out.min() < 100


@pytest.mark.parametrize(
    "image", [Image.new("RGBA", (300, 300), (0, 0, 0, 0)), Image.new("L", (300, 300), 255)]
)
def test_blank_sketch_raises(image: Image.Image) -> None:
    with pytest.raises(BlankSketchError):
        preprocess_sketch(image, 64)


def test_bbox_of_strokes() -> None:
    assert stroke_bbox(canvas_sketch(mode="L")) == (20, 30, 121, 101)


def test_tensor_range_and_augmentation_keeps_shape() -> None:
    t = preprocess_sketch(canvas_sketch(), 64)
    assert t.shape == (3, 64, 64) and t.min() >= -1 and t.max() <= 1
    thicker = SketchAugment(
        thicken_prob=1.0, margin_range=(SKETCH_MARGIN, SKETCH_MARGIN), shift=0, flip_prob=0
    )
    aug = preprocess_sketch(canvas_sketch(), 64, thicker)
    assert aug.shape == (3, 64, 64)
    assert (aug < 0).sum() > (t < 0).sum()  # same framing, thicker strokes: more ink, never less


def test_photo_and_edge_share_geometry() -> None:
    photo = Image.new("RGB", (300, 150), (10, 200, 30))
    edge = Image.new("L", (300, 150), 0)
    p, e = preprocess_photo_pair(photo, edge, 64)
    assert p.shape == (3, 64, 64) and e is not None and e.shape == (3, 64, 64)
    # letterboxed: the padding rows are white in both
    assert p[:, 0, :].min() == 1.0 and e[:, 0, :].min() == 1.0
    assert p[:, 32, :].max() < 1.0 and e[:, 32, :].max() < 0
