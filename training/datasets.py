"""Dataset readers: split files (the official Sketchy layout), TU-Berlin, and folder-per-class trees.

Every reader yields ``Item(path, label, source)``; ``source`` is the photo a sketch was drawn from when
the dataset says so (Sketchy names sketches ``<photo_id>-<k>.png``), else None.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from model.imageio import IMAGE_EXTENSIONS

_SKETCHY_SKETCH = re.compile(r"^(?P<photo>.+)-\d+$")
_IMAGENET_PHOTO = re.compile(r"^(?P<wnid>n\d{8})_")


@dataclass(frozen=True)
class Item:
    path: Path
    label: str
    source: str | None = None


def normalise_class_name(name: str) -> str:
    """One spelling for a class across datasets: lower case, spaces and hyphens as underscores."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def sketch_source(path: Path) -> str | None:
    match = _SKETCHY_SKETCH.match(path.stem)
    return match.group("photo") if match else None


def synset_of(photo_id: str | None) -> str | None:
    """The ImageNet synset (wnid) a photo id names, as Sketchy's ``n02121808_1234`` does; else None."""
    match = _IMAGENET_PHOTO.match(photo_id or "")
    return match.group("wnid") if match else None


def read_split(split_file: Path, root: Path | None = None) -> list[Item]:
    """``<path relative to root> <class>`` lines; root defaults to the split file's dataset root."""
    split_file = Path(split_file)
    if root is None:
        root = split_file.parent.parent if split_file.parent.name == "splits" else split_file.parent
    items = []
    for lineno, line in enumerate(split_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{split_file}:{lineno}: expected '<path> <class>', got {line!r}")
        rel, label = parts
        path = Path(root) / rel
        items.append(Item(path, label, sketch_source(path)))
    return items


def read_folder_per_class(root: Path) -> list[Item]:
    """Every image below ``root``; its class is its parent folder's name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    items = [
        Item(p, p.parent.name, sketch_source(p))
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and p.parent != root
    ]
    if not items:
        raise ValueError(f"no images in class folders under {root}")
    return items


def read_items(spec: Path, root: Path | None = None) -> list[Item]:
    """A split file or a folder-per-class directory."""
    spec = Path(spec)
    return read_folder_per_class(spec) if spec.is_dir() else read_split(spec, root)


def read_tuberlin_sketches(root: Path) -> list[Item]:
    """TU-Berlin: ``png/<class>/<n>.png`` (the root may be the folder holding ``png`` or ``png`` itself)."""
    root = Path(root)
    png = root / "png" if (root / "png").is_dir() else root
    return [Item(i.path, i.label) for i in read_folder_per_class(png)]


def write_split(items: list[Item], root: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{item.path.relative_to(root).as_posix()} {normalise_class_name(item.label)}" for item in items]
    out.write_text("\n".join(lines) + "\n")


def category_split(
    sketches: list[Item], queries_per_class: int, seed: int = 0
) -> tuple[list[Item], list[Item]]:
    """Category-level split as in Deep Sketch Hashing: a fixed random set of query sketches per class."""
    by_class: dict[str, list[Item]] = defaultdict(list)
    for item in sketches:
        by_class[item.label].append(item)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda i: str(i.path))
        rng.shuffle(members)
        test.extend(members[:queries_per_class])
        train.extend(members[queries_per_class:])
    return train, test


def validation_split(train: list[Item], seed: int = 0) -> tuple[list[Item], list[Item]]:
    """Hold out, in every other class, the sketches of one source photo: a validation set that never
    touches the test split and, like the test split, shows photos whose sketches were not trained on."""
    groups: dict[str, dict[str, list[Item]]] = defaultdict(lambda: defaultdict(list))
    for item in train:
        groups[item.label][item.source or str(item.path)].append(item)
    rng = random.Random(seed)
    held: set[Path] = set()
    for n, label in enumerate(sorted(groups)):
        if n % 2:
            continue
        sources = sorted(groups[label])
        if len(sources) > 1:
            held.update(i.path for i in groups[label][rng.choice(sources)])
    return [i for i in train if i.path not in held], [i for i in train if i.path in held]


def load_images(items: list[Item], desc: str = "images") -> list[Image.Image]:
    """Every item's image decoded into memory as stored (mode kept), with a progress bar."""
    images = []
    for item in tqdm(items, desc=desc, unit="img"):
        with Image.open(item.path) as im:
            images.append(im.copy())
    return images
