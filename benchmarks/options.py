"""Options beyond the paper, each trained at the ablations' budget and compared with the full CSCAN row
of docs/benchmarks/ablations.json (same data, seed, epochs, resolution and learning rate).

    python -m benchmarks.options [--epochs 10] [--image-size 128]

Chosen by the validation columns; the test columns are reported, never used to choose.
"""

from __future__ import annotations

import json

from benchmarks.ablations import budget_arguments, train_and_score
from benchmarks.common import DOCS, write_result

OPTIONS = {
    "stroke augmentation (drop stroke pieces, wobble lines)": ["--stroke-augment"],
}


def main() -> None:
    args = budget_arguments("options")
    ablations = json.loads((DOCS / "ablations.json").read_text())
    budget = {"epochs": args.epochs, "image_size": args.image_size, "lr": args.lr}
    if any(ablations[k] != v for k, v in budget.items()):
        raise SystemExit(f"docs/benchmarks/ablations.json was run at another budget than {budget}")
    rows = [ablations["results"][0]]  # full CSCAN, the paper's network: the baseline
    for name, flags in OPTIONS.items():
        rows.append(train_and_score(name, flags, args))
        print(rows[-1], flush=True)
    write_result(
        "options",
        {**budget, "init": "ImageNet", "results": rows},
        f"python -m benchmarks.options --epochs {args.epochs} --image-size {args.image_size} --lr {args.lr}",
    )


if __name__ == "__main__":
    main()
