"""What an option costs at inference: one sketch (a lone search) and a batch of photos (indexing) through
the network, for checkpoints trained with different options, timed side by side in one run (rounds
alternate between the checkpoints, so a noisy neighbour slows them alike).

    python -m benchmarks.option_cost NAME=CHECKPOINT [NAME=CHECKPOINT ...] [--rounds 30]

PyTorch on the CPU, 2 threads, each checkpoint at its own input size; the network only (edge maps and
decoding excluded). Writes docs/benchmarks/option_cost.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import write_result
from model.factory import load_encoder
from training.datasets import read_split

SKETCHY = Path(__file__).resolve().parents[2] / "shared" / "data" / "sketchy-subset"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoints", nargs="+", help="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--photos", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    named = dict(spec.split("=", 1) for spec in args.checkpoints)
    encoders = {name: load_encoder(Path(path), "cpu", backend="torch") for name, path in named.items()}
    sketch = Image.open(read_split(SKETCHY / "splits" / "test_sketches.txt")[0].path)
    photo_items = read_split(SKETCHY / "splits" / "photos.txt")[:: 3125 // args.photos][: args.photos]
    photos = [Image.open(i.path).convert("RGB") for i in photo_items]
    edges = [p.convert("L") for p in photos]  # any grey image: the network's cost does not depend on it
    sketch_ms: dict[str, list[float]] = {n: [] for n in encoders}
    photo_ms: dict[str, list[float]] = {n: [] for n in encoders}
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, encoder in encoders.items():
            one = encoder.prepare_sketches([sketch])
            start = time.perf_counter()
            encoder.encode_prepared_sketches(one)
            middle = time.perf_counter()
            if round_ % 5 == 0:  # photo batches are slow: every fifth round
                encoder.encode_photos(photos, edges, args.photos)
                photo_ms[name].append((time.perf_counter() - middle) * 1000 / args.photos)
            if round_:
                sketch_ms[name].append((middle - start) * 1000)
    rows = [
        {
            "variant": name,
            "checkpoint": named[name],
            "backbone": encoder.config.backbone,
            "image_size": encoder.config.image_size,
            "sketch_ms_median": round(float(np.median(sketch_ms[name])), 2),
            "photo_network_ms_median": round(float(np.median(photo_ms[name][1:])), 2),
        }
        for name, encoder in encoders.items()
    ]
    base = rows[0]
    for row in rows:
        row["sketch_vs_first"] = round(row["sketch_ms_median"] / base["sketch_ms_median"], 2)
        row["photo_vs_first"] = round(row["photo_network_ms_median"] / base["photo_network_ms_median"], 2)
    specs = " ".join(f"{n}={p}" for n, p in named.items())
    write_result(
        "option_cost",
        {"rounds": args.rounds, "photos": args.photos, "backend": "torch (cpu)", "results": rows},
        f"python -m benchmarks.option_cost {specs}",
    )


if __name__ == "__main__":
    main()
