"""Write the project's split lists under ``splits/`` from the shared data's own split files.

Nothing is copied: every line is ``<path relative to the shared data folder> <class>``, so the lists
work with ``--root ../shared/data``. Deterministic (fixed seed), so rerunning it reproduces the files.

- ``sketchy_train_sketches.txt``, ``sketchy_test_sketches.txt``, ``sketchy_photos.txt``: the shared
  splits, re-rooted (the dev protocol: test sketches against all 3,125 photos).
- ``unseen/gallery.txt``: 5 photos of every class held out of training — the source photo of the
  class's test sketches plus 4 more — the gallery of the unseen-gallery protocol (625 photos).
- ``unseen/train_photos.txt``: the other 2,500 photos.
- ``unseen/train_sketches.txt``: the shared training sketches minus those drawn from a held-out photo,
  so a model trained on these lists has seen nothing of the unseen gallery.
- ``unseen/seen_control.txt``: 5 *training* photos of every class (the first by name), a gallery of the
  same size and classes that the model did see: the control for the unseen gallery.
- ``tuberlin_train.txt`` / ``tuberlin_val.txt``: TU-Berlin sketches drawn from memory, 10 of every class
  held out for validation (never for test: there is no TU-Berlin test split here).

Usage: python scripts/make_splits.py [--data ../shared/data] [--out splits]
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

SEED = 13
UNSEEN_PER_CLASS = 5
TUBERLIN_VAL_PER_CLASS = 10


def read_lines(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.rsplit(maxsplit=1)) for line in path.read_text().splitlines() if line.strip()]  # type: ignore[misc]


def photo_of_sketch(rel: str) -> str:
    """Sketchy names a sketch ``<photo_id>-<k>.png``."""
    return Path(rel).stem.rsplit("-", 1)[0]


def write(out: Path, name: str, rows: list[tuple[str, str]]) -> None:
    (out / name).write_text("".join(f"{path} {label}\n" for path, label in rows))
    print(f"{name}: {len(rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("splits"))
    args = parser.parse_args()
    sketchy = args.data / "sketchy-subset" / "splits"
    args.out.mkdir(parents=True, exist_ok=True)
    prefix = "sketchy-subset/"
    photos = [(prefix + p, c) for p, c in read_lines(sketchy / "photos.txt")]
    train_sketches = [(prefix + p, c) for p, c in read_lines(sketchy / "train_sketches.txt")]
    test_sketches = [(prefix + p, c) for p, c in read_lines(sketchy / "test_sketches.txt")]

    rng = random.Random(SEED)
    test_sources = {photo_of_sketch(p) for p, _ in test_sketches}
    by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in photos:
        by_class[row[1]].append(row)
    unseen: list[tuple[str, str]] = []
    for label in sorted(by_class):
        members = sorted(by_class[label])
        sources = [r for r in members if Path(r[0]).stem in test_sources]
        others = [r for r in members if Path(r[0]).stem not in test_sources]
        rng.shuffle(others)
        unseen.extend(sources + others[: UNSEEN_PER_CLASS - len(sources)])
    unseen_ids = {Path(p).stem for p, _ in unseen}
    write(args.out, "sketchy_train_sketches.txt", train_sketches)
    write(args.out, "sketchy_test_sketches.txt", test_sketches)
    write(args.out, "sketchy_photos.txt", photos)
    (args.out / "unseen").mkdir(exist_ok=True)
    write(args.out, "unseen/gallery.txt", sorted(unseen))
    write(args.out, "unseen/train_photos.txt", [r for r in photos if Path(r[0]).stem not in unseen_ids])
    seen_by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in photos:
        if Path(row[0]).stem not in unseen_ids:
            seen_by_class[row[1]].append(row)
    control = [r for label in sorted(seen_by_class) for r in sorted(seen_by_class[label])[:UNSEEN_PER_CLASS]]
    write(args.out, "unseen/seen_control.txt", control)
    write(
        args.out,
        "unseen/train_sketches.txt",
        [r for r in train_sketches if photo_of_sketch(r[0]) not in unseen_ids],
    )

    tu = args.data / "tu-berlin-40"
    tu_by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for p, c in read_lines(tu / "sketches.txt"):
        tu_by_class[c].append(("tu-berlin-40/" + p, c))
    tu_train, tu_val = [], []
    for label in sorted(tu_by_class):
        members = sorted(tu_by_class[label])
        rng.shuffle(members)
        tu_val.extend(sorted(members[:TUBERLIN_VAL_PER_CLASS]))
        tu_train.extend(sorted(members[TUBERLIN_VAL_PER_CLASS:]))
    write(args.out, "tuberlin_train.txt", tu_train)
    write(args.out, "tuberlin_val.txt", tu_val)


if __name__ == "__main__":
    main()
