"""Indexing throughput against the machine's own compute bound, float32 and int8 photo branches side by
side in one run.

    python -m benchmarks.indexing_throughput [--photos DIR] [--repeats 2]

1. The bound: the photo branch's FLOPs a photo (photo + edge EfficientNet-Lite0 at the trained size,
   counted by ``torch.utils.flop_counter``) against the FLOP/s of a float32 matrix product on the same
   two cores (the best a dense kernel reaches here). Depthwise convolutions cannot run at matmul speed,
   so the bound is loose by design: it is the ceiling, not a target any CNN reaches.
2. The int8 photo graph, made as a user makes it (``indexer export-onnx --int8-calibration``).
3. Real end-to-end ``GalleryBuilder`` builds of the whole folder into fresh data directories (no caches),
   interleaved, ``--repeats`` times each (the median counts): "before", float32 with each batch prepared
   after the last one was encoded (the builder as it was: ``prefetch=False``); float32 with the next
   batch prepared while the network runs (the default now); int8 with prefetching
   (``SKETCH_PHOTO_PRECISION=int8``).
4. Dev mAP of both (``evaluate_checkpoint``: 486 Sketchy test sketches against the 3,125 photos), so the
   speed-up is at equal quality.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import write_result
from catalog.builder import GalleryBuilder
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.settings import DEFAULT_CHECKPOINT, REPO_ROOT, load_settings
from model.choices import PhotoPrecision
from model.factory import load_encoder
from model.onnx_export import _Photo
from training.evaluation import evaluate_checkpoint

SHARED = REPO_ROOT.parent / "shared" / "data"
SHARED_PHOTOS = SHARED / "sketchy-subset" / "photo"
THREADS = 2


def photo_flops(checkpoint: Path) -> float:
    """Floating-point operations (multiply and add counted apart) to encode one photo with its edge map."""
    from torch.utils.flop_counter import FlopCounterMode

    encoder = load_encoder(checkpoint, "cpu", backend="torch")
    size = encoder.config.image_size
    branch = _Photo(encoder.model).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        branch(torch.rand(1, 3, size, size), torch.rand(1, 3, size, size))
    return float(counter.get_total_flops())


def matmul_flops_per_s(n: int = 1024, repeats: int = 20) -> float:
    """Best float32 n x n matrix product rate on THREADS threads."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


VARIANTS = {  # name: (photo precision, prefetch)
    "before": (PhotoPrecision.FP32, False),
    "fp32": (PhotoPrecision.FP32, True),
    "int8": (PhotoPrecision.INT8, True),
}


def build_once(
    checkpoint: Path, photos: Path, onnx: Path, precision: PhotoPrecision, prefetch: bool
) -> float:
    """Photos a second of one build of ``photos`` into a fresh data directory."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp), checkpoint=checkpoint, onnx_cache_dir=onnx, photo_precision=precision
        )
        migrate.upgrade(settings.resolved_database_url)
        sessions = make_session_factory(make_engine(settings.resolved_database_url))
        encoder = load_encoder(checkpoint, "cpu", cache_dir=onnx, photo_precision=precision)
        builder = GalleryBuilder(settings, sessions, encoder, prefetch=prefetch)
        start = time.perf_counter()
        report = builder.build("bench", photos)
        return report.count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    flops = photo_flops(args.checkpoint)
    rate = matmul_flops_per_s()
    bound = rate / flops
    print(f"{flops / 1e9:.3f} GFLOP a photo; matmul {rate / 1e9:.1f} GFLOP/s; bound {bound:.0f} photos/s")
    with tempfile.TemporaryDirectory() as onnx_dir:
        onnx = Path(onnx_dir)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "indexer.cli",
                "export-onnx",
                "--checkpoint",
                str(args.checkpoint),
                "--out",
                str(onnx),
                "--int8-calibration",
                str(args.photos),
            ],
            check=True,
        )
        speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(args.repeats):
            for name, (precision, prefetch) in VARIANTS.items():
                speed = build_once(args.checkpoint, args.photos, onnx, precision, prefetch)
                print(f"build, {name}: {speed:.1f} photos/s", flush=True)
                speeds[name].append(speed)
        quality = {}
        for precision in PhotoPrecision:
            result = evaluate_checkpoint(
                args.checkpoint,
                REPO_ROOT / "splits" / "sketchy_test_sketches.txt",
                REPO_ROOT / "splits" / "sketchy_photos.txt",
                SHARED,
                "cpu",
                photo_precision=precision,
                onnx_cache=onnx,
            ).result
            quality[str(precision)] = {
                "hamming_mAP": round(result["mAP"], 4),
                "asymmetric_mAP": round(result["asymmetric"]["mAP"], 4),
            }
            print(precision, quality[str(precision)], flush=True)
    median = {name: statistics.median(v) for name, v in speeds.items()}
    write_result(
        "indexing_throughput",
        {
            "photos": os.path.relpath(args.photos, REPO_ROOT),
            "threads": THREADS,
            "gflop_per_photo": round(flops / 1e9, 4),
            "matmul_gflop_per_s": round(rate / 1e9, 1),
            "compute_bound_photos_per_s": round(bound, 1),
            "builds": {name: [round(s, 1) for s in v] for name, v in speeds.items()},
            "photos_per_s": {name: round(v, 1) for name, v in median.items()},
            "speedup_over_before": {name: round(v / median["before"], 3) for name, v in median.items()},
            "fraction_of_bound": {name: round(v / bound, 3) for name, v in median.items()},
            "dev_quality": quality,
            "dev_mAP_change": round(quality["int8"]["hamming_mAP"] - quality["fp32"]["hamming_mAP"], 4),
        },
        "python -m benchmarks.indexing_throughput",
    )


if __name__ == "__main__":
    main()
