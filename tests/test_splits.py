"""The split lists in splits/ are what scripts/make_splits.py writes, and the unseen-gallery protocol is
clean: no held-out photo, and no sketch drawn from one, is in its training lists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO
from training.datasets import read_split


def _stems(path: Path) -> set[str]:
    return {Path(line.split()[0]).stem for line in path.read_text().splitlines()}


def test_committed_splits_are_reproduced_by_the_script(sketchy: Path, tmp_path: Path) -> None:
    data = sketchy.parent
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_splits.py"),
            "--data",
            str(data),
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    for made in sorted(tmp_path.rglob("*.txt")):
        committed = REPO / "splits" / made.relative_to(tmp_path)
        assert committed.read_text() == made.read_text(), committed


def test_unseen_gallery_protocol(sketchy: Path) -> None:
    splits = REPO / "splits"
    gallery = read_split(splits / "unseen" / "gallery.txt", sketchy.parent)
    train_photos = _stems(splits / "unseen" / "train_photos.txt")
    train_sketch_sources = {s.rsplit("-", 1)[0] for s in _stems(splits / "unseen" / "train_sketches.txt")}
    held = {g.path.stem for g in gallery}
    assert len(gallery) == 625 and all(g.path.exists() for g in gallery)
    assert {g.label for g in gallery} == {p.label for p in read_split(sketchy / "splits" / "photos.txt")}
    assert not held & train_photos and not held & train_sketch_sources
    test_sources = {s.rsplit("-", 1)[0] for s in _stems(splits / "sketchy_test_sketches.txt")}
    assert test_sources <= held  # every test sketch's own photo is in the unseen gallery
    assert len(train_photos) + len(held) == 3125
    control = _stems(splits / "unseen" / "seen_control.txt")  # same size, photos the model did train on
    assert len(control) == 625 and control <= train_photos


def test_tuberlin_validation_is_apart_from_training(sketchy: Path) -> None:
    train = _stems_with_class(REPO / "splits" / "tuberlin_train.txt")
    val = _stems_with_class(REPO / "splits" / "tuberlin_val.txt")
    assert not train & val and len(val) == 400 and len(train) == 2400


def _stems_with_class(path: Path) -> set[str]:
    return {line.split()[0] for line in path.read_text().splitlines()}
