"""Dataset readers on the real Sketchy subset in ../shared, and split writing."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from training.datasets import (
    category_split,
    normalise_class_name,
    read_folder_per_class,
    read_items,
    read_split,
    read_tuberlin_sketches,
    validation_split,
    write_split,
)


def test_sketchy_splits(sketchy: Path) -> None:
    train = read_split(sketchy / "splits" / "train_sketches.txt")
    test = read_split(sketchy / "splits" / "test_sketches.txt")
    photos = read_split(sketchy / "splits" / "photos.txt")
    assert (len(train), len(test), len(photos)) == (2639, 486, 3125)
    assert len({p.label for p in photos}) == 125
    assert all(i.path.exists() for i in test[:20] + photos[:20])
    # every sketch names the photo it was drawn from, and that photo is in the gallery
    photo_ids = {p.path.stem for p in photos}
    assert all(s.source in photo_ids for s in train + test)
    # no test sketch's photo has a training sketch
    assert not {s.source for s in test} & {s.source for s in train}


def test_folder_per_class_on_real_files(sketchy: Path) -> None:
    items = read_folder_per_class(sketchy / "photo" / "tx_000000000000" / "..")
    cats = [i for i in items if i.label == "cat"]
    assert len(cats) == 25
    assert read_items(sketchy / "sketch" / "tx_000000000000")[0].source is not None


def test_validation_split_is_disjoint_and_by_source(sketchy: Path) -> None:
    train = read_split(sketchy / "splits" / "train_sketches.txt")
    fit, val = validation_split(train)
    assert len(fit) + len(val) == len(train) and val
    assert not {s.source for s in val} & {s.source for s in fit}
    assert validation_split(train)[1] == val  # fixed seed


def test_prepare_style_split_and_tuberlin_layout(tmp_path: Path) -> None:
    for cls in ("Hot Air-Balloon", "cat"):
        folder = tmp_path / "png" / cls
        folder.mkdir(parents=True)
        for n in range(12):
            Image.new("L", (8, 8), 255).save(folder / f"{n}.png")
    sketches = read_tuberlin_sketches(tmp_path)
    train, test = category_split(sketches, 10, seed=3)
    assert len(test) == 20 and len(train) == 4
    assert category_split(sketches, 10, seed=3)[1] == test
    write_split(test, tmp_path, tmp_path / "splits" / "test.txt")
    back = read_split(tmp_path / "splits" / "test.txt", tmp_path)
    assert {i.label for i in back} == {"hot_air_balloon", "cat"}
    assert normalise_class_name(" Car (sedan) ") == "car_(sedan)"


def test_bad_split_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("just-a-path\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1"):
        read_split(bad)


def test_synset_of_reads_imagenet_photo_ids() -> None:
    from training.datasets import synset_of

    assert synset_of("n02121808_1234") == "n02121808"
    assert synset_of("holiday_photo") is None and synset_of(None) is None
