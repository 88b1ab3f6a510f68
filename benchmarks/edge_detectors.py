"""Edge detectors side by side: milliseconds per photo (what indexing pays for each photo's edge map)
against the network's own share, on the same real photos in one run.

    python -m benchmarks.edge_detectors [--sample 64] [--pidinet ../shared/weights/pidinet]

Canny runs at the photo's resolution; HED and PiDiNet at the checkpoint's edge size. PiDiNet (research-only
licence) is timed only when its weights are given. Writes docs/benchmarks/edge_detectors.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import write_result
from catalog.builder import scan_source
from catalog.settings import DEFAULT_CHECKPOINT
from model.edges import build_edge_detector
from model.factory import load_encoder
from model.imageio import decode_image

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = SHARED / "data" / "sketchy-subset" / "photo"


def ms_per_photo(run: Callable[[list[Image.Image]], object], photos: list[Image.Image], batch: int) -> float:
    run(photos[:batch])  # warm-up: first-call allocations and lazy weights
    start = time.perf_counter()
    for i in range(0, len(photos), batch):
        run(photos[i : i + batch])
    return round((time.perf_counter() - start) / len(photos) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pidinet", type=Path, default=SHARED / "weights" / "pidinet")
    args = parser.parse_args()
    torch.set_num_threads(2)
    encoder = load_encoder(DEFAULT_CHECKPOINT, "cpu")
    size = encoder.config.edge_size
    paths = [c.path for c in scan_source(PHOTOS)][:: max(1, 3125 // args.sample)][: args.sample]
    photos = [decode_image(p.read_bytes(), 40_000_000).convert("RGB") for p in paths]
    detectors = {"canny": build_edge_detector("canny"), "hed": build_edge_detector("hed", size=size)}
    for variant in ("table5_pidinet.pth", "table5_pidinet-tiny.pth"):
        if (args.pidinet / variant).is_file():
            name = "pidinet" + ("-tiny" if "tiny" in variant else "")
            detectors[name] = build_edge_detector("pidinet", weights=args.pidinet / variant, size=size)
    rows = {name: ms_per_photo(d.detect_batch, photos, args.batch) for name, d in detectors.items()}
    edges = detectors["canny"].detect_batch(photos)
    network = ms_per_photo(
        lambda chunk: encoder.encode_photos(chunk, edges[: len(chunk)]), photos, args.batch
    )
    result = {
        "photos": len(photos),
        "torch_threads": torch.get_num_threads(),
        "edge_size": size,
        "edge_ms_per_photo": rows,
        "network_ms_per_photo": network,
        "photos_per_s_edges_plus_network": {n: round(1000 / (ms + network), 1) for n, ms in rows.items()},
    }
    write_result("edge_detectors", result, "python -m benchmarks.edge_detectors")


if __name__ == "__main__":
    main()
