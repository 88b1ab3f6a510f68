"""Sketch and photo preprocessing: what the server gets from a web canvas reads like a dataset sketch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from benchmarks.sketch_inputs import against, page_canvases, preprocessing_of, search_preparation_ms
from model.factory import load_encoder
from model.preprocessing import (
    SKETCH_MARGIN,
    BlankSketchError,
    SketchAugment,
    _clear_frames,
    _ink,
    _median,
    _percentile,
    _rounded_levels,
    drop_strokes,
    ink_map,
    looks_like_photo,
    normalise_sketch,
    preprocess_photo_pair,
    preprocess_sketch,
    sketch_frame,
    stroke_bbox,
    to_array,
    wobble,
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


def test_stray_specks_do_not_stretch_the_box_but_a_second_drawing_does() -> None:
    sketch = canvas_sketch(mode="L")
    draw = ImageDraw.Draw(sketch)
    draw.point([(390, 395), (2, 380)], fill=0)  # dust, cut off from the drawing by paper
    draw.point([(300, 5), (301, 5)], fill=0)  # a 2 px speck: no more than the stray allowance
    assert stroke_bbox(sketch) == (20, 30, 121, 101)
    assert stroke_bbox(np.asarray(sketch)) == (20, 30, 121, 101)  # grey levels as an array: the same
    draw.ellipse((250, 250, 300, 290), outline=0, width=3)  # a second piece of the drawing counts
    assert stroke_bbox(sketch) == (20, 30, 302, 291)
    draw.rectangle((340, 5, 341, 6), fill=0)  # 4 px: more than specks, so part of the drawing
    assert stroke_bbox(sketch) == (20, 5, 342, 291)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 3000),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.float32, np.float64]),
)
def test_the_quick_median_and_percentile_are_numpys(n: int, channels: int, seed: int, dtype: type) -> None:
    rng = np.random.default_rng(seed)
    values = (rng.random((n, channels)) * rng.random()).astype(dtype)
    if seed % 3 == 0:
        values = np.round(values * 8) / 8  # ties, as a flat sketch's levels have
    np.testing.assert_array_equal(_median(values), np.median(values, axis=0))
    column = values[:, 0]
    assert _percentile(column, 95) == float(np.percentile(column, 95))
    assert _percentile(column, 50) == float(np.percentile(column, 50))


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


def strokes_image() -> Image.Image:
    image = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(image)
    for x in range(20, 180, 20):  # eight separate vertical strokes
        draw.line((x, 30, x, 170), fill=0, width=3)
    return image


def test_stroke_dropout_removes_whole_pieces_and_keeps_half_the_ink() -> None:
    gray = np.asarray(strokes_image())
    ink = (gray < 200).sum()
    for seed in range(20):
        out = drop_strokes(gray, 0.5, np.random.default_rng(seed))
        kept = (out < 200).sum()
        assert ink / 2 <= kept <= ink
        columns = {x for x in range(200) if (out[:, x] < 200).any()}
        # a stroke is either all there or all gone
        for x in range(20, 180, 20):
            assert all(c in columns for c in (x - 1, x, x + 1)) or not any(
                c in columns for c in (x - 1, x, x + 1)
            )
    assert any((drop_strokes(gray, 0.5, np.random.default_rng(s)) != gray).any() for s in range(5))
    one = np.full((50, 50), 255, np.uint8)
    one[10:40, 25] = 0
    assert (drop_strokes(one, 1.0, np.random.default_rng(0)) == one).all()  # the only piece stays


def test_wobble_bends_lines_but_keeps_the_drawing() -> None:
    gray = np.asarray(strokes_image())
    out = wobble(gray, 0.02, np.random.default_rng(0))
    assert out.shape == gray.shape and (out != gray).any()
    import cv2

    pieces = cv2.connectedComponents((out < 200).astype(np.uint8), connectivity=8)[0] - 1
    assert pieces == 8  # the same eight strokes, bent, none broken or merged
    assert 0.6 < (out < 200).sum() / (gray < 200).sum() < 1.6
    assert (wobble(gray, 0.0, np.random.default_rng(0)) == gray).all()


def test_stroke_augment_in_training_preprocessing() -> None:
    augment = SketchAugment(stroke_dropout=0.3, jitter=0.02)
    tensors = [preprocess_sketch(strokes_image(), 64, augment) for _ in range(4)]
    assert all(t.shape == (3, 64, 64) for t in tensors)
    assert not all(torch.equal(tensors[0], t) for t in tensors[1:])


def test_sketch_frame_is_where_the_network_input_lies() -> None:
    image = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(image).rectangle((100, 50, 200, 250), outline=0, width=3)
    left, top, side = sketch_frame(image)
    # the frame is the strokes' bounding box, squared and padded: cropping it reproduces the input
    framed = Image.new("L", (side, side), 255)
    framed.paste(image, (-left, -top))
    expected = normalise_sketch(image, 64)
    got = framed.resize((64, 64), Image.Resampling.BILINEAR)
    assert np.abs(np.asarray(expected, np.int16) - np.asarray(got, np.int16)).mean() < 2
    assert left < 100 and top < 50 and left + side > 203 and top + side > 253


def test_the_photo_check_judges_large_uploads_from_the_searched_ink_map(sketchy: Path) -> None:
    """Above 256 px the photo check area-averages the ink map the network's input came from (a
    thumbnail's own ink map cost more than the rest of a page search): phone-sized photos are still
    flagged and the page's 512 px canvases of real drawings are not."""
    photos = sorted((sketchy / "photo" / "tx_000000000000").rglob("*.jpg"))[::97][:8]
    assert len(photos) == 8
    flagged = 0
    for path in photos:
        with Image.open(path) as photo:
            large = photo.convert("RGB").resize((800, 600), Image.Resampling.BICUBIC)
        flagged += looks_like_photo(large, ink_map(large))
    assert flagged >= len(photos) - 1, flagged
    sketches = sorted((sketchy / "sketch" / "tx_000000000000").rglob("*.png"))[::211][:8]
    assert len(sketches) == 8
    for canvas in page_canvases(sketches):
        assert not looks_like_photo(canvas, ink_map(canvas))
        assert looks_like_photo(canvas) is False  # its own ink map when none is given


def test_the_preprocessing_benchmark_compares_with_a_revision(sketchy: Path, tiny_checkpoint: Path) -> None:
    """benchmarks.sketch_inputs --against REV patched a function the encoders no longer call and
    failed; it compares the codes of REV's preprocessing and times the page's canvases with both."""
    sketches = sorted((sketchy / "sketch" / "tx_000000000000").rglob("*.png"))[::301][:4]
    assert len(sketches) == 4
    encoder = load_encoder(tiny_checkpoint, "cpu")
    old = preprocessing_of("HEAD")
    found = against(old, "HEAD", encoder, sketches)
    assert found["sketches"] == found["same_code"] == len(sketches) and found["max_bits"] == 0
    assert search_preparation_ms(old, page_canvases(sketches[:2]), 64) > 0


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([255, 250, 200, 30, 0]),  # white, off-white, grey and black paper
    st.booleans(),  # a frame round the drawing
    st.integers(0, 3),  # stray specks
)
def test_grey_sketches_on_flat_paper_take_the_lookup_to_the_same_ink(
    seed: int, paper: int, framed: bool, specks: int
) -> None:
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(40, 300)), int(rng.integers(40, 300))
    image = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 12))):  # strokes of any grey, darker or lighter than the paper
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, min(width, height), 4))
        draw.line((x0, y0, x1, y1), fill=int(rng.integers(0, 256)), width=int(rng.integers(1, 6)))
    if framed:
        draw.rectangle((1, 1, width - 2, height - 2), outline=255 - paper, width=2)
    for _ in range(specks):
        draw.point((int(rng.integers(0, width)), int(rng.integers(0, height))), fill=255 - paper)
    levels = np.asarray(image)[..., None]
    np.testing.assert_array_equal(_ink(levels, lookup=True), _ink(levels, lookup=False))
    assert _ink(levels).dtype == np.float32


def test_levels_round_half_to_even_like_numpy() -> None:
    """OpenCV rounds and casts the dark-on-white levels in one pass; it must give NumPy's rint to the
    last bit, at the halves above all (where rounding modes differ) and right beside them."""
    whole = np.arange(256, dtype=np.float32)
    halves = whole[:-1] + np.float32(0.5)
    beside = [np.nextafter(halves, np.float32(0)), np.nextafter(halves, np.float32(256))]
    spread = np.random.default_rng(0).random(200_000, dtype=np.float32) * np.float32(255)
    values = np.concatenate([whole, halves, *beside, spread]).reshape(1, -1)
    np.testing.assert_array_equal(_rounded_levels(values), np.rint(values).astype(np.uint8))
    assert _rounded_levels(np.array([[0.5, 1.5, 2.5, 254.5]], np.float32)).tolist() == [[0, 2, 2, 254]]


def test_empty_images_keep_their_shape_through_the_opencv_steps() -> None:
    """OpenCV answers None for an empty array, where NumPy's steps gave an empty one."""
    assert _rounded_levels(np.zeros((0, 5), np.float32)).shape == (0, 5)
    out = to_array(Image.new("L", (0, 3)))
    assert out.shape == (3, 3, 0) and out.dtype == np.float32


def test_frames_inside_a_margin_and_a_band_are_cleared_and_the_drawing_kept() -> None:
    """A 2-line frame after a 1-line paper margin, a side band inside it, and a drawn rectangle that
    spans neither: the frame's and the band's lines come back (top and bottom first, then sides, read
    inside the frame), the drawing stays."""
    mask = np.zeros((60, 80), bool)
    mask[1:3, :] = mask[57:59, :] = True  # frame: top and bottom, after one row of paper
    mask[1:59, 1:3] = mask[1:59, 77:79] = True  # and its sides
    mask[3:57, 3] = True  # a band along the inner left side
    mask[20:40, 20:60] = False
    mask[20, 20:60] = mask[39, 20:60] = mask[20:40, 20] = mask[20:40, 59] = True  # the drawing
    drawing = mask[10:50, 10:70].copy()
    lines = _clear_frames(mask)
    assert lines == [
        (1, slice(None)),
        (2, slice(None)),
        (58, slice(None)),
        (57, slice(None)),
        (slice(None), 1),
        (slice(None), 2),
        (slice(None), 3),
        (slice(None), 78),
        (slice(None), 77),
    ]
    assert not mask[:10].any() and not mask[50:].any() and not mask[:, :10].any() and not mask[:, 70:].any()
    np.testing.assert_array_equal(mask[10:50, 10:70], drawing)
