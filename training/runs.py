"""A training run from split files to checkpoints: the work behind `indexer train`.

The CLI parses options into a ``TrainConfig`` and the model's settings with ``fill`` (one step, fields
matched by name) and hands them to ``run_training``; nothing here prints but through ``log``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from training.datasets import Item, read_items, validation_split, write_split
from training.evaluation import make_validator, validation_set
from training.plots import training_curve
from training.training import TrainConfig, Trainer, load_train_data

T = TypeVar("T")


def fill(cls: type[T], values: Mapping[str, Any]) -> T:
    """A dataclass built from the entries of ``values`` named like its fields (nested dataclass fields
    are filled from the same mapping); fields without an entry keep their defaults."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        hint = hints[f.name]
        if isinstance(hint, type) and is_dataclass(hint):
            kwargs[f.name] = fill(hint, values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def model_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that are ModelConfig fields (the classes come from the data)."""
    names = {f.name for f in fields(ModelConfig)} - {"num_classes", "class_names"}
    return {k: v for k, v in values.items() if k in names}


def under(root: Path, spec: Path) -> Path:
    """A split file or folder as given when it exists, else relative to the dataset root."""
    return spec if spec.exists() else root / spec


@dataclass
class TrainingData:
    """Where a run's sketches and photos come from (split files or class folders under ``root``)."""

    root: Path
    sketches: Path
    photos: Path
    extra_sketches: list[Path] = field(default_factory=list)
    extra_validation: Path | None = None
    validation: bool = True  # hold out the sketches of one photo in every other class (validation_split)
    cache_dir: Path = Path("data/cache/edges")
    edge_weights: Path | None = None


def run_training(
    data: TrainingData,
    settings: Mapping[str, Any],
    train: TrainConfig,
    out: Path,
    init: Path | None = None,
    device: str = "cpu",
    resume: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train CSCAN into ``out`` (checkpoints every epoch, ``best.safetensors`` by validation, history,
    training curve, the held-out validation sketches as a split file); resumes from ``out``.

    ``settings`` are ModelConfig fields (``model_settings``). Raises EdgeWeightsMissing when the edge
    detector's weights are not there and ValueError for unusable data."""
    root = data.root
    sketch_items = read_items(under(root, data.sketches), root)
    photo_items = read_items(under(root, data.photos), root)
    val_items: list[Item] = []
    if data.validation:
        sketch_items, val_items = validation_split(sketch_items, train.seed)
    for spec in data.extra_sketches:
        sketch_items += read_items(under(root, spec), root)
    extra_val = read_items(under(root, data.extra_validation), root) if data.extra_validation else []
    classes = sorted(
        {i.label for i in photo_items} | {i.label for i in sketch_items} | {i.label for i in extra_val}
    )
    config = ModelConfig(**settings, num_classes=len(classes), class_names=classes)
    loaded = load_train_data(
        sketch_items,
        photo_items,
        config,
        data.cache_dir,
        device,
        data.edge_weights,
        with_teacher=train.loss.distill > 0,
    )
    photo_classes = {i.label for i in photo_items}
    extra_val = [i for i in extra_val if i.label in photo_classes]  # retrieval needs photos of the class
    validate = None
    if val_items or extra_val:
        out.mkdir(parents=True, exist_ok=True)
        write_split(val_items, root, out / "validation_sketches.txt")  # for `indexer evaluate` later
        index = {c: i for i, c in enumerate(classes)}
        named = (("", val_items), ("extra_", extra_val))
        sets = [validation_set(prefix, items, index) for prefix, items in named if items]
        validate = make_validator(
            sets, loaded.photos, loaded.edges, np.array(loaded.photo_labels), loaded.photo_ids, device
        )
    info = {
        "data": {"root": str(root), "sketches": str(data.sketches), "photos": str(data.photos)},
        "n_train_sketches": len(sketch_items),
        "n_validation_sketches": len(val_items),
        "n_photos": len(photo_items),
        "extra_sketches": [str(p) for p in data.extra_sketches],
        "extra_validation": str(data.extra_validation) if data.extra_validation else None,
        "n_extra_validation_sketches": len(extra_val),
        "init": str(init) if init else None,
    }
    init_ckpt = load_checkpoint(init) if init else None
    if init_ckpt is not None and init_ckpt.config.image_size != config.image_size:
        # Every layer is convolutional up to global pooling, so the weights carry over to another input
        # size; the run fine-tunes them at the new one.
        log(f"--init was trained at {init_ckpt.config.image_size} px: fine-tuning at {config.image_size} px")
    trainer = Trainer(config, train, loaded, out, evaluate=validate, device=device, info=info, init=init_ckpt)
    if resume and trainer.resume():
        log(f"resuming after epoch {trainer.start_epoch}")
    history = trainer.run()
    training_curve(history, out / "training_curve.png")
    return history
