"""What the sketch preprocessing does with real drawings and photos: the figures behind its constants.

- ``strong_ink``: percentiles of a drawing's strong-stroke ink (``model.preprocessing.GREY_INK``) over
  the Sketchy and TU-Berlin sketches.
- ``smallest_drawing_px``: the smallest drawing (the longer side of its strokes' box) among all the
  Sketchy and TU-Berlin sketches (``model.preprocessing.MIN_DRAWING_SIDE`` must stay below it).
- ``photo_warning``: the share of sketches that ``looks_like_photo`` flags (wrongly) and of Sketchy
  photos it flags (rightly).
- ``tu_berlin_guesses``: the checkpoint's first-guess accuracy on TU-Berlin sketches, which must not
  drop when the preprocessing changes (its grey strokes are what the network was trained on).
- ``shapes``: time and peak memory of decoding and preparing the largest sketches the cap allows, one
  fresh process each.
- ``page_canvas``, ``sketchy_sketch``: what preparing one search costs (ink map, network input, photo
  check) for sketches as the drawing page sends them (512x512 RGBA) and as the dataset has them, against
  one sketch encode in the same run, and with ``--against`` against revision REV's preprocessing on the
  same images.
- ``against``: with ``--against REV``, how many of the Sketchy test sketches and a sample of TU-Berlin's
  get other codes from the preprocessing of git revision REV (on ordinary drawings the two must agree).

    python -m benchmarks.sketch_inputs [--checkpoint CKPT] [--against REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image, ImageDraw

import model.encoding
import model.preprocessing as prep
from benchmarks.common import timed_runs, write_result
from catalog.settings import DEFAULT_CHECKPOINT
from model.factory import Encoder, load_encoder

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHAPES = ((40000, 104), (104, 40000), (2048, 2048))
PAGE_CANVAS, PAGE_SKETCHES = 512, 60  # the drawing page's canvas, and how many sketches are drawn on it


def strong_ink(paths: list[Path]) -> list[float]:
    seen: list[float] = []
    target = prep._strong_target
    prep._strong_target = lambda strong: seen.append(strong) or target(strong)  # type: ignore[func-returns-value]
    try:
        for path in paths:
            with Image.open(path) as image:
                prep.ink_map(image)
    finally:
        prep._strong_target = target
    return seen


def smallest_drawing(paths: list[Path]) -> int:
    sides = []
    for path in paths:
        with Image.open(path) as image:
            left, top, right, bottom = prep.stroke_bbox(prep.sketch_to_dark_on_white(image))
        sides.append(max(right - left, bottom - top))
    return min(sides)


def flagged(paths: list[Path]) -> float:
    hits = 0
    for path in paths:
        with Image.open(path) as image:
            hits += prep.looks_like_photo(image.convert("RGB") if path.suffix == ".jpg" else image)
    return round(hits / len(paths), 4)


def preparation_cost(data: bytes, function: str = "sketch_array") -> tuple[float, float, tuple[int, ...]]:
    """Decode a PNG sketch and prepare it at 128 px with ``model.preprocessing.<function>`` in a fresh
    process: (seconds, MB its peak resident memory grew, the prepared array's shape)."""
    script = (
        "import sys, time\n"
        "import numpy as np\n"
        "from model.imageio import decode_image\n"
        f"from model.preprocessing import {function} as prepare\n"
        "data = sys.stdin.buffer.read()\n"
        "def kb(key):\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith(key))\n"
        "    return int(line.split()[1])\n"
        "before = kb('VmRSS')\n"
        "open('/proc/self/clear_refs', 'w').write('5')  # the high-water mark starts again from here\n"
        "start = time.perf_counter()\n"
        "prepared = prepare(decode_image(data, 4_194_304, ('PNG',)), 128)\n"
        "took = time.perf_counter() - start\n"
        "print(took, (kb('VmHWM') - before) / 1024, *np.shape(prepared))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, check=True, cwd=REPO, timeout=120
    ).stdout.split()
    return float(out[0]), float(out[1]), tuple(int(n) for n in out[2:])


def shape_cost(width: int, height: int) -> dict[str, float]:
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    draw.line((10, height // 2, width - 10, height // 2), fill=0, width=3)
    draw.line((width // 3, 10, width // 3, height - 10), fill=0, width=3)
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    took, grew, _ = preparation_cost(buf.getvalue())  # what the service runs: sketch_array
    return {"png_kb": round(len(buf.getvalue()) / 1024, 1), "ms": round(took * 1000), "mb": round(grew)}


def preprocessing_of(revision: str) -> ModuleType:
    """``model/preprocessing.py`` as git revision ``revision`` had it, loaded as a module."""
    source = subprocess.run(
        ["git", "show", f"{revision}:model/preprocessing.py"], capture_output=True, check=True, cwd=REPO
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "old_preprocessing.py"
        path.write_bytes(source)
        spec = importlib.util.spec_from_file_location("old_preprocessing", path)
        assert spec is not None and spec.loader is not None
        old = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = old  # its dataclasses look their module up
        spec.loader.exec_module(old)
    return old


def page_canvases(paths: list[Path]) -> list[Image.Image]:
    """Sketches as the drawing page sends them: black strokes on a transparent 512x512 canvas."""
    canvases: list[Image.Image] = []
    for path in paths:
        grey = Image.open(path).convert("L").resize((PAGE_CANVAS, PAGE_CANVAS), Image.Resampling.BILINEAR)
        black = Image.new("L", grey.size, 0)
        canvases.append(Image.merge("RGBA", (black, black, black, Image.eval(grey, lambda v: 255 - v))))
    return canvases


def search_preparation_ms(preprocessing: ModuleType, sketches: list[Image.Image], size: int) -> float:
    """Median ms per sketch of what a search prepares with ``preprocessing`` (this module or another
    revision's): the ink map, the network's input from it and the photo check on it."""

    def prepare_all() -> None:
        for sketch in sketches:
            ink = preprocessing.ink_map(sketch)
            preprocessing.sketch_array(sketch, size, ink)
            preprocessing.looks_like_photo(sketch, ink)

    return round(float(np.median(timed_runs(prepare_all, 5, warmups=1))) / len(sketches) * 1000, 3)


def against(old: ModuleType, revision: str, encoder: Encoder, paths: list[Path]) -> dict[str, object]:
    """Codes of the same sketches from revision's preprocessing (``old``) and from this one."""
    images = [Image.open(p) for p in paths]
    new_codes = encoder.encode_sketches(images).packed
    current = model.encoding.sketch_array  # what the encoders prepare sketches with
    model.encoding.sketch_array = old.sketch_array  # type: ignore[attr-defined]
    try:
        old_codes = encoder.encode_sketches(images).packed
    finally:
        model.encoding.sketch_array = current
    bits = np.unpackbits(np.bitwise_xor(new_codes, old_codes), axis=1).sum(axis=1)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", revision], capture_output=True, check=True, cwd=REPO, text=True
    ).stdout.strip()
    return {
        "revision": commit,
        "sketches": len(paths),
        "same_code": int((bits == 0).sum()),
        "max_bits": int(bits.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument(
        "--against", metavar="REV", help="compare codes with this git revision's preprocessing"
    )
    args = parser.parse_args()
    sketchy = sorted((SHARED / "sketchy-subset" / "sketch").rglob("*.png"))
    tu_lines = (SHARED / "tu-berlin-40" / "sketches.txt").read_text().splitlines()
    tu = [SHARED / "tu-berlin-40" / line.split(" ")[0] for line in tu_lines]
    photos = sorted((SHARED / "sketchy-subset" / "photo").rglob("*.jpg"))
    quantiles = [0, 1, 5, 50, 95, 99, 100]
    result: dict[str, object] = {
        "strong_ink": {
            name: dict(
                zip(
                    map(str, quantiles),
                    np.percentile(strong_ink(paths), quantiles).round(3).tolist(),
                    strict=True,
                )
            )
            for name, paths in (("sketchy", sketchy[::5]), ("tu_berlin", tu[::5]))
        },
        "smallest_drawing_px": smallest_drawing(sketchy + tu),
        "photo_warning": {
            "sketches_flagged": flagged(sketchy[::5] + tu[::5]),
            "photos_flagged": flagged(photos[::5]),
            "sketches": len(sketchy[::5] + tu[::5]),
            "photos": len(photos[::5]),
        },
    }
    encoder = load_encoder(args.checkpoint, "cpu")
    items = [line.split(" ") for line in tu_lines][::4]
    images = [Image.open(SHARED / "tu-berlin-40" / path) for path, _ in items]
    labels = np.array([encoder.class_names.index(label) for _, label in items])
    guesses = np.argmax(
        encoder.sketch_class_probabilities(encoder.encode_sketches(images).continuous), axis=1
    )
    result["tu_berlin_guesses"] = {"accuracy": round(float((guesses == labels).mean()), 4), "n": len(items)}
    result["shapes"] = {f"{w}x{h}": shape_cost(w, h) for w, h in SHAPES}
    picked = sketchy[:: max(1, len(sketchy) // PAGE_SKETCHES)][:PAGE_SKETCHES]
    as_drawn = [Image.open(p) for p in picked]
    for image in as_drawn:
        image.load()
    kinds = {
        "page_canvas": (f"{PAGE_CANVAS}x{PAGE_CANVAS} RGBA, strokes on transparency", page_canvases(picked)),
        "sketchy_sketch": ("256x256 grey, as in the dataset", as_drawn),
    }
    size = encoder.config.image_size
    one = encoder.prepare_sketches(as_drawn[:1])
    encode_ms = float(np.median(timed_runs(lambda: encoder.encode_prepared_sketches(one), 50))) * 1000
    old = preprocessing_of(args.against) if args.against else None
    for key, (what, images) in kinds.items():
        cost: dict[str, object] = {"sketches": what, "n": len(images), "encode_one_ms": round(encode_ms, 3)}
        prepare_ms = search_preparation_ms(prep, images, size)
        cost["prepare_ms"] = prepare_ms
        cost["prepare_over_encode"] = round(prepare_ms / encode_ms, 3)
        if old is not None:
            before = search_preparation_ms(old, images, size)
            cost["revision_prepare_ms"] = before
            cost["speed_up"] = round(before / prepare_ms, 2)
        result[key] = cost
    if old is not None:
        test_lines = (REPO / "splits" / "sketchy_test_sketches.txt").read_text().splitlines()
        sample = [SHARED / line.split(" ")[0] for line in test_lines] + tu[::20]
        result["against"] = against(old, str(args.against), encoder, sample)
    write_result("sketch_inputs", result, "python -m benchmarks.sketch_inputs")  # adds the arguments


if __name__ == "__main__":
    main()
