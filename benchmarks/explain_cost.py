"""What ``explain=1`` costs, side by side with plain searches of the same sketches, and what the class
guesses add to every search.

    python -m benchmarks.explain_cost [--rounds 20]

The real app in-process (committed checkpoint, a gallery of real photos), plain and explained searches
interleaved so both see the same machine load. Reports server-side time (took_ms), response size, the
size of one heat map, and how much the attention masks vary at all (max - min within a mask).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_result
from catalog.builder import GalleryBuilder
from catalog.settings import DEFAULT_CHECKPOINT, load_settings
from model.factory import load_encoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset"
CLASSES = ("cat", "teapot", "bicycle", "airplane", "fish", "chair", "horse", "car_(sedan)")


def main() -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args()
    sketches = [next((SHARED / "sketch" / "tx_000000000000" / c).glob("*.png")).read_bytes() for c in CLASSES]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), checkpoint=args.checkpoint, default_gallery="bench")
        with TestClient(create_app(settings)) as client:
            state = client.app.state.service  # type: ignore[attr-defined]
            encoder = load_encoder(args.checkpoint, "cpu", cache_dir=settings.onnx_cache)
            GalleryBuilder(settings, state.sessions, encoder, show_progress=False).build(
                "bench", SHARED / "photo" / "tx_000000000000"
            )
            state.indexes.refresh()
            timings: dict[str, list[float]] = {"plain": [], "explain": []}
            sizes: dict[str, list[int]] = {"plain": [], "explain": []}
            heatmaps: list[int] = []
            spans: dict[str, list[float]] = {"sketch": [], "photo": []}  # how much the masks vary
            for round_ in range(args.rounds + 1):
                for sketch in sketches:
                    for mode, query in (("plain", ""), ("explain", "&explain=1")):
                        r = client.post(
                            f"/search?k=24{query}", files={"file": ("s.png", sketch, "image/png")}
                        )
                        assert r.status_code == 200, r.text
                        if round_ == 0:
                            continue  # warm-up: caches, edge maps of the top photos
                        body = r.json()
                        timings[mode].append(body["took_ms"])
                        sizes[mode].append(len(r.content))
                        if mode == "explain":
                            explained = [m["attention"] for m in body["results"] if m["attention"]]
                            heatmaps += [len(a["png"]) for a in explained]
                            e = body["explanation"]
                            spans["sketch"].append(e["mask_max"] - e["mask_min"])
                            spans["photo"] += [a["mask_max"] - a["mask_min"] for a in explained]
            continuous = np.random.default_rng(0).random((1, encoder.bits), dtype=np.float32)
            start = time.perf_counter()
            for _ in range(1000):
                encoder.sketch_class_probabilities(continuous)
            guesses_us = (time.perf_counter() - start) / 1000 * 1e6
            photos = state.indexes.get("bench").count
    result = {
        "gallery_photos": photos,
        "searches_each": len(timings["plain"]),
        "k": 24,
        "explained_photos_per_search": 8,
        "plain_median_ms": round(statistics.median(timings["plain"]), 2),
        "explain_median_ms": round(statistics.median(timings["explain"]), 2),
        "plain_response_bytes": round(statistics.median(sizes["plain"])),
        "explain_response_bytes": round(statistics.median(sizes["explain"])),
        "heatmap_data_uri_bytes_median": round(statistics.median(heatmaps)),
        "class_guesses_us": round(guesses_us, 1),
        "sketch_mask_range_max": round(max(spans["sketch"]), 5),
        "photo_mask_range_max": round(max(spans["photo"]), 5),
    }
    print(result, flush=True)
    write_result("explain_cost", result, "python -m benchmarks.explain_cost")


if __name__ == "__main__":
    main()
