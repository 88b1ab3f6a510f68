"""Options beyond the paper, each trained at the ablations' budget and compared with the full CSCAN row
of docs/benchmarks/ablations.json (same data, seed, epochs, resolution and learning rate).

    python -m benchmarks.options [--epochs 10] [--image-size 128] [--only NAME ...]

Each option takes about 25 minutes on 2 cores (more for larger inputs or backbones), so options can be
run a few at a time with `--only` (a prefix of the option's name); rows measured earlier stay in
docs/benchmarks/options.json. Chosen by the validation columns; the test columns are reported, never
used to choose.
"""

from __future__ import annotations

import json

from benchmarks.ablations import budget_arguments, train_and_score
from benchmarks.common import DOCS, write_result

OPTIONS = {
    "stroke augmentation (drop stroke pieces, wobble lines)": ["--stroke-augment"],
    "input 160 px (thin strokes of drawings from memory survive)": ["--image-size", "160"],
    "photo backbone at 0.02x the heads' rate (0.1x by default)": ["--photo-lr-scale", "0.02"],
    "EfficientNet-Lite2 backbones": ["--backbone", "efficientnet_lite2"],
    "HED edge maps (Canny by default)": ["--edge-detector", "hed"],
}


def chosen(only: list[str]) -> dict[str, list[str]]:
    if not only:
        return OPTIONS
    picked = {name: flags for name, flags in OPTIONS.items() if any(name.startswith(o) for o in only)}
    if not picked:
        raise SystemExit(f"no option starts with {only}; options: {list(OPTIONS)}")
    return picked


def main() -> None:
    args = budget_arguments("options", with_only=True)
    ablations = json.loads((DOCS / "ablations.json").read_text())
    budget = {"epochs": args.epochs, "image_size": args.image_size, "lr": args.lr}
    if any(ablations[k] != v for k, v in budget.items()):
        raise SystemExit(f"docs/benchmarks/ablations.json was run at another budget than {budget}")
    earlier = DOCS / "options.json"
    rows = json.loads(earlier.read_text())["results"] if earlier.exists() else []
    rows = rows or [ablations["results"][0]]  # full CSCAN, the paper's network: the baseline
    for name, flags in chosen(args.only).items():
        row = train_and_score(name, flags, args)
        print(row, flush=True)
        rows = [r for r in rows if r["variant"] != name] + [row]
        # Written after every option, so a long sweep cut short keeps what it measured.
        write_result(
            "options",
            {**budget, "init": "ImageNet", "results": rows},
            f"python -m benchmarks.options --epochs {args.epochs} --image-size {args.image_size} "
            f"--lr {args.lr} --only <option>",
        )


if __name__ == "__main__":
    main()
