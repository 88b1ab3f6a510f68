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

from benchmarks.common import percentiles, timed_runs, write_result
from catalog.settings import DEFAULT_CHECKPOINT
from model.factory import load_encoder
from training.datasets import read_split

SKETCHY = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset"


def measure(encoder, sketches: list[Image.Image], repeats: int) -> dict:  # type: ignore[no-untyped-def]
    one = encoder.prepare_sketches(sketches[:1])
    result: dict = {
        "backend": encoder.backend,
        "encode_batch_1": percentiles(timed_runs(lambda: encoder.encode_prepared_sketches(one), repeats)),
    }
    for size in (8, 16):
        batch = encoder.prepare_sketches(sketches[:size])
        stats = percentiles(
            timed_runs(lambda b=batch: encoder.encode_prepared_sketches(b), max(10, repeats // 5))
        )
        stats["sketches_per_s"] = round(size / (stats["median_ms"] / 1000), 1)
        result[f"encode_batch_{size}"] = stats
    return result


def other_variants(encoder, sketches: list[Image.Image], repeats: int) -> list[dict]:  # type: ignore[no-untyped-def]
    """What else the ecosystem offers for CPU inference of a small CNN, at batch 1 on the same sketch."""
    one = torch.from_numpy(encoder.prepare_sketches(sketches[:1]))  # prepared inputs are NumPy arrays
    model = encoder.model
    rows = []
    with torch.inference_mode():
        int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        rows.append(
            {
                "variant": "int8 dynamic quantisation (Linear layers; convolutions stay float)",
                "encode_batch_1": percentiles(timed_runs(lambda: int8.encode_sketch(one), repeats)),
            }
        )
        started = time.perf_counter()
        compiled = torch.compile(model.encode_sketch)
        compiled(one)
        compile_s = time.perf_counter() - started
        rows.append(
            {
                "variant": "torch.compile (inductor)",
                "compile_s": round(compile_s, 1),
                "encode_batch_1": percentiles(timed_runs(lambda: compiled(one), repeats)),
            }
        )
    for row in rows:
        print(row, flush=True)
    return rows


def smaller_inputs(checkpoint: Path, sketches: list[Image.Image], repeats: int) -> list[dict]:
    """The same weights fed smaller sketches (mAP at that size: `indexer evaluate --image-size N`)."""
    rows = []
    for size in (96, 112):
        encoder = load_encoder(checkpoint, "cpu", backend="torch")
        encoder.config.image_size = size
        one = encoder.prepare_sketches(sketches[:1])
        rows.append(
            {
                "variant": f"smaller input: {size} px (PyTorch; same weights, not retrained)",
                "encode_batch_1": percentiles(
                    timed_runs(lambda o=one, e=encoder: e.encode_prepared_sketches(o), repeats)
                ),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = read_split(SKETCHY / "splits" / "test_sketches.txt", SKETCHY)[:64]
    sketches = []
    for item in items:
        with Image.open(item.path) as im:
            sketches.append(im.copy())
    encoders = {name: load_encoder(args.checkpoint, "cpu", backend=name) for name in ("torch", "onnx")}
    reference = encoders["torch"].encode_sketches(sketches)
    result: dict = {
        "checkpoint": args.checkpoint.name,
        "image_size": encoders["torch"].config.image_size,
        "threads": args.threads,
        "preprocess_one": percentiles(
            timed_runs(lambda: encoders["torch"].prepare_sketches(sketches[:1]), args.repeats)
        ),
        "backends": [],
    }
    for encoder in encoders.values():  # side by side in one run: the machine is shared and noisy
        row = measure(encoder, sketches, args.repeats)
        row["variant"] = "default"
        codes = encoder.encode_sketches(sketches)
        row["bits_equal_to_torch"] = bool((codes.packed == reference.packed).all())
        row["max_abs_diff_to_torch"] = float(abs(codes.continuous - reference.continuous).max())
        print(row, flush=True)
        result["backends"].append(row)
    result["tried_and_dropped"] = other_variants(encoders["torch"], sketches, args.repeats)
    result["tried_and_dropped"] += smaller_inputs(args.checkpoint, sketches, args.repeats)
    write_result(
        "encode_latency",
        result,
        f"python -m benchmarks.encode_latency --threads {args.threads} --repeats {args.repeats}",
    )


if __name__ == "__main__":
    main()
