"""Ablations of CSCAN with one shared (small) training budget, evaluated on the dev test split.

    python -m benchmarks.ablations [--epochs 3] [--image-size 96]

Trains each variant with `indexer train` (same seed, epochs, resolution, data), evaluates it with
`indexer evaluate` on the 486 test sketches against the 3,125 photos, and writes docs/ablations.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import DOCS, write_result

ROOT = Path(__file__).resolve().parents[1]
SKETCHY = ROOT.parent / "shared" / "data" / "sketchy-subset"
VARIANTS = {
    "full CSCAN (sum fusion)": [],
    "without attention": ["--no-attention"],
    "without edge branch (photo only)": ["--no-edge"],
    "concat fusion": ["--fusion", "concat"],
}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ablations")
    args = parser.parse_args()
    indexer = [sys.executable, "-m", "indexer.cli"]
    rows = []
    for name, flags in VARIANTS.items():
        slug = name.split(" (")[0].replace(" ", "-")
        out = args.out / slug
        start = time.perf_counter()
        run(
            [
                *indexer,
                "train",
                "--root",
                str(SKETCHY),
                "--out",
                str(out),
                "--epochs",
                str(args.epochs),
                "--image-size",
                str(args.image_size),
                "--eval-every",
                str(args.epochs),
                "--cache-dir",
                ".cache/edges",
                *flags,
            ]
        )
        train_s = time.perf_counter() - start
        metrics = out / "test_metrics.json"
        run(
            [
                *indexer,
                "evaluate",
                "--checkpoint",
                str(out / "last.safetensors"),
                "--root",
                str(SKETCHY),
                "--queries",
                str(SKETCHY / "splits/test_sketches.txt"),
                "--gallery",
                str(SKETCHY / "splits/photos.txt"),
                "--json",
                str(metrics),
                "--cache-dir",
                ".cache/edges",
            ]
        )
        result = json.loads(metrics.read_text())
        history = json.loads((out / "history.json").read_text())
        rows.append(
            {
                "variant": name,
                "flags": " ".join(flags),
                "train_seconds": round(train_s),
                "validation_mAP": history[-1].get("val", {}).get("mAP"),
                "test_mAP": result["mAP"],
                "test_mAP@200": result["mAP@200"],
                "test_P@200": result["P@200"],
                "test_continuous_mAP": result["continuous"]["mAP"],
            }
        )
        print(rows[-1], flush=True)
    write_result(
        "ablations",
        {"epochs": args.epochs, "image_size": args.image_size, "results": rows},
        f"python -m benchmarks.ablations --epochs {args.epochs} --image-size {args.image_size}",
    )
    lines = [
        "| variant | validation mAP | test mAP | test mAP@200 | test P@200 | continuous mAP | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['validation_mAP']:.3f} | {r['test_mAP']:.3f} | {r['test_mAP@200']:.3f} | "
            f"{r['test_P@200']:.3f} | {r['test_continuous_mAP']:.3f} | {r['train_seconds'] / 60:.1f} min |"
        )
    (DOCS / "ablations.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
