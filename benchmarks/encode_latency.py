"""Sketch encoding speed of a checkpoint: latency of one sketch (what a lone search pays) and sketches/s
in batches (what the service's batcher gets under load), on real test sketches.

    python -m benchmarks.encode_latency [--checkpoint CKPT] [--threads 2] [--repeats 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from app.settings import DEFAULT_CHECKPOINT
from benchmarks.common import percentiles, write_result
from indexer.datasets import read_split
from model.factory import load_encoder

SKETCHY = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset"


def timed_runs(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(5):  # warm-up: first calls pay for allocations and kernel selection
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder = load_encoder(args.checkpoint, "cpu")
    items = read_split(SKETCHY / "splits" / "test_sketches.txt", SKETCHY)[:64]
    sketches = []
    for item in items:
        with Image.open(item.path) as im:
            sketches.append(im.copy())
    one = encoder.prepare_sketches(sketches[:1])
    result: dict = {
        "checkpoint": args.checkpoint.name,
        "image_size": encoder.config.image_size,
        "threads": args.threads,
        "preprocess_one": percentiles(
            timed_runs(lambda: encoder.prepare_sketches(sketches[:1]), args.repeats)
        ),
        "encode_batch_1": percentiles(timed_runs(lambda: encoder.encode_sketch_batch(one), args.repeats)),
    }
    for size in (8, 16):
        batch = encoder.prepare_sketches(sketches[:size])
        stats = percentiles(
            timed_runs(lambda b=batch: encoder.encode_sketch_batch(b), max(10, args.repeats // 5))
        )
        stats["sketches_per_s"] = round(size / (stats["median_ms"] / 1000), 1)
        result[f"encode_batch_{size}"] = stats
    write_result(
        "encode_latency",
        result,
        f"python -m benchmarks.encode_latency --threads {args.threads} --repeats {args.repeats}",
    )


if __name__ == "__main__":
    main()
