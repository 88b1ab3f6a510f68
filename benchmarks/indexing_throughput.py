"""Indexing throughput at the default settings: photos/s including edge maps, and where the time goes.

    python -m benchmarks.indexing_throughput [--photos DIR] [--limit N]

Times the stages on a sample (decode, edge maps, network), then a real end-to-end `GalleryBuilder`
build of the whole folder into a fresh data directory (no caches), which is the number that counts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import write_result
from catalog.builder import GalleryBuilder, scan_source
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.settings import DEFAULT_CHECKPOINT, load_settings
from model.factory import load_encoder
from model.imageio import decode_image

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset" / "photo"


def stage_breakdown(encoder, paths: list[Path], batch: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    totals = {"decode": 0.0, "edges": 0.0, "preprocess_and_network": 0.0}
    for start in range(0, len(paths), batch):
        chunk = paths[start : start + batch]
        t0 = time.perf_counter()
        images = [decode_image(p.read_bytes(), 40_000_000).convert("RGB") for p in chunk]
        t1 = time.perf_counter()
        edges = encoder.edge_maps(images)
        t2 = time.perf_counter()
        encoder.encode_photos(images, edges)
        t3 = time.perf_counter()
        totals["decode"] += t1 - t0
        totals["edges"] += t2 - t1
        totals["preprocess_and_network"] += t3 - t2
    n = len(paths)
    return {f"{k}_ms_per_photo": round(v / n * 1000, 2) for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--sample", type=int, default=256, help="photos for the stage breakdown")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    encoder = load_encoder(args.checkpoint, "cpu")
    paths = [c.path for c in scan_source(args.photos)]
    breakdown = stage_breakdown(encoder, paths[: args.sample], args.batch)
    print(breakdown, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(data_dir=Path(tmp), checkpoint=args.checkpoint)
        migrate.upgrade(settings.resolved_database_url)
        sessions = make_session_factory(make_engine(settings.resolved_database_url))
        builder = GalleryBuilder(settings, sessions, encoder, batch_size=args.batch)
        start = time.perf_counter()
        report = builder.build("bench", args.photos)
        elapsed = time.perf_counter() - start
    result = {
        "photos": report.count,
        "seconds": round(elapsed, 1),
        "photos_per_s": round(report.count / elapsed, 2),
        "torch_threads": 2,
        "edge_detector": encoder.config.edge_detector,
        "image_size": encoder.config.image_size,
        "stage_breakdown_sample": args.sample,
        **breakdown,
    }
    write_result("indexing_throughput", result, "python -m benchmarks.indexing_throughput")


if __name__ == "__main__":
    main()
