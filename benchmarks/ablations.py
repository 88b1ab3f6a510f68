"""Do the paper's parts pay off? Ablations of CSCAN at one shared budget.

    python -m benchmarks.ablations [--epochs 10] [--image-size 128] [--set paper|instance]

``--set paper`` (the default) takes out the paper's parts one at a time; ``--set instance`` trains the
paper's network with and without the terms beyond it that aim at codes carrying the drawing (the
instance triplet, SAKE-style distillation, bit balance, class groups, the sketch's own photo), and also
reports the source photo's within-class acc@1/acc@10 and the distinct codes on the validation sketches.

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
VARIANT_SETS = {
    "paper": {
        "full CSCAN (sum fusion)": [],
        "without attention": ["--no-attention"],
        "without edge branch (photo only)": ["--no-edge"],
        "concat fusion": ["--fusion", "concat"],
    },
    "instance": {
        "full CSCAN (sum fusion)": [],
        "with instance, distillation, balance": [
            "--instance", "2", "--distill", "1", "--balance", "0.5", "--class-group", "2",
            "--own-photo-prob", "0.75",
        ],
    },
}  # fmt: skip


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def train_and_score(name: str, flags: list[str], args: argparse.Namespace) -> dict:
    indexer = [sys.executable, "-m", "indexer.cli"]
    out = args.out / name.split(" (")[0].replace(" ", "-").replace(",", "")
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
        # the source photo within its class, service ranking (chance 0.04 / 0.40 with 25 photos a class)
        "validation_class_acc@1": val.get("class_acc@1"),
        "validation_class_acc@10": val.get("class_acc@10"),
        "validation_distinct_codes": val.get("distinct_codes"),
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
    if not with_only:
        parser.add_argument("--set", choices=sorted(VARIANT_SETS), default="paper")
    return parser.parse_args()


def main() -> None:
    args = budget_arguments("ablations")
    if args.set != "paper":
        args.out = args.out / args.set  # its own runs: the paper set's stay as they are
    rows = []
    for name, flags in VARIANT_SETS[args.set].items():
        rows.append(train_and_score(name, flags, args))
        print(rows[-1], flush=True)
    budget = {"epochs": args.epochs, "image_size": args.image_size, "lr": args.lr, "init": "ImageNet"}
    name = "ablations" if args.set == "paper" else f"ablations_{args.set}"
    write_result(name, {**budget, "set": args.set, "results": rows}, "python -m benchmarks.ablations")
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
    if args.set == "instance":
        lines += [
            "",
            "| variant | validation within-class acc@1 / acc@10 of the source photo (chance 0.040 / 0.400) "
            "| distinct codes (of 3,125 photos) |",
            "|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['variant']} | {r['validation_class_acc@1']:.3f} / {r['validation_class_acc@10']:.3f} "
                f"| {r['validation_distinct_codes']:,} |"
            )
    (DOCS / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
