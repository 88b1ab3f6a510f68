"""Do the paper's parts pay off? Ablations of CSCAN at one shared budget.

    python -m benchmarks.ablations [--epochs 10] [--image-size 128]

Each variant trains from ImageNet weights with the committed recipe's data (Sketchy training split +
TU-Berlin training sketches, same seed, epochs, resolution and learning rate), is scored on both
validation sets at its last epoch, then evaluated with `indexer evaluate` on the 486 dev test sketches
against the 3,125 photos. Writes docs/benchmarks/ablations.{json,md}.
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
DATA = ROOT.parent / "shared" / "data"
VARIANTS = {
    "full CSCAN (sum fusion)": [],
    "without attention": ["--no-attention"],
    "without edge branch (photo only)": ["--no-edge"],
    "concat fusion": ["--fusion", "concat"],
}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def train_and_score(name: str, flags: list[str], args: argparse.Namespace) -> dict:
    indexer = [sys.executable, "-m", "indexer.cli"]
    out = args.out / name.split(" (")[0].replace(" ", "-")
    start = time.perf_counter()
    run(
        [
            *indexer, "train", "--root", str(DATA), "--out", str(out),
            "--sketches", "splits/sketchy_train_sketches.txt", "--photos", "splits/sketchy_photos.txt",
            "--extra-sketches", "splits/tuberlin_train.txt", "--extra-validation", "splits/tuberlin_val.txt",
            "--epochs", str(args.epochs), "--eval-every", str(args.epochs), "--lr", str(args.lr),
            "--image-size", str(args.image_size), "--cache-dir", ".cache/edges", *flags,
        ]
    )  # fmt: skip
    train_s = time.perf_counter() - start
    metrics = out / "test_metrics.json"
    run(
        [
            *indexer, "evaluate", "--checkpoint", str(out / "last.safetensors"), "--root", str(DATA),
            "--queries", "splits/sketchy_test_sketches.txt", "--gallery", "splits/sketchy_photos.txt",
            "--json", str(metrics), "--cache-dir", ".cache/edges",
        ]
    )  # fmt: skip
    test = json.loads(metrics.read_text())
    val = json.loads((out / "history.json").read_text())[-1].get("val", {})
    return {
        "variant": name,
        "flags": " ".join(flags),
        "train_seconds": round(train_s),
        "validation_mAP": val.get("mAP"),
        "validation_tuberlin_mAP": val.get("extra_mAP"),
        "test_mAP": test["mAP"],
        "test_asymmetric_mAP": test["asymmetric"]["mAP"],
        "test_P@10": test["P@10"],
        "test_continuous_mAP": test["continuous"]["mAP"],
    }


def budget_arguments(out: str, with_only: bool = False) -> argparse.Namespace:
    """The shared training budget of the ablations and the options benchmark."""
    parser = argparse.ArgumentParser()
    if with_only:
        parser.add_argument("--only", nargs="*", default=[], help="run the options whose names start so")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / out)
    return parser.parse_args()


def main() -> None:
    args = budget_arguments("ablations")
    rows = []
    for name, flags in VARIANTS.items():
        rows.append(train_and_score(name, flags, args))
        print(rows[-1], flush=True)
    budget = {"epochs": args.epochs, "image_size": args.image_size, "lr": args.lr, "init": "ImageNet"}
    write_result(
        "ablations",
        {**budget, "results": rows},
        f"python -m benchmarks.ablations --epochs {args.epochs} --image-size {args.image_size} "
        f"--lr {args.lr}",
    )
    lines = [
        f"Budget: {args.epochs} epochs from ImageNet at {args.image_size} px, heads lr {args.lr}, seed 0, "
        "Sketchy + TU-Berlin training data; validation at the last epoch; test = 486 dev test sketches "
        "against 3,125 photos.",
        "",
        "| variant | validation mAP Sketchy | validation mAP TU-Berlin | test mAP (Hamming) | test mAP "
        "(asymmetric) | test P@10 | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['validation_mAP']:.3f} | {r['validation_tuberlin_mAP']:.3f} | "
            f"{r['test_mAP']:.3f} | {r['test_asymmetric_mAP']:.3f} | {r['test_P@10']:.3f} | "
            f"{r['train_seconds'] / 60:.1f} min |"
        )
    (DOCS / "ablations.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
