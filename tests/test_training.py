"""A short, real training run on real sketches and photos lowers the loss, checkpoints and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.datasets import read_split
from indexer.training import TrainConfig, Trainer, load_train_data
from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.factory import build_model

CLASSES = ("cat", "teapot", "bicycle", "airplane")


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_resumes(sketchy: Path, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    sketches = [s for s in read_split(sketchy / "splits" / "train_sketches.txt") if s.label in CLASSES]
    photos = [p for p in read_split(sketchy / "splits" / "photos.txt") if p.label in CLASSES]
    config = ModelConfig(image_size=64, num_classes=4, class_names=sorted(CLASSES), edge_detector="canny")
    data = load_train_data(sketches, photos, config, tmp_path / "edges")
    train = TrainConfig(epochs=4, batch_size=16, eval_every=100, seed=0)
    trainer = Trainer(config, train, data, tmp_path / "run")
    history = trainer.run()
    steps = trainer.step_losses
    first, last = np.mean([s["total"] for s in steps[:3]]), np.mean([s["total"] for s in steps[-3:]])
    assert last < 0.8 * first, (first, last)
    assert history[-1]["cls"] < history[0]["cls"]

    # every epoch left a loadable checkpoint and a resumable state
    ckpt = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert ckpt.config == config and ckpt.info["train"]["epochs_done"] == 4
    build_model(ckpt)
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 4
    longer = Trainer(
        config, TrainConfig(epochs=5, batch_size=16, eval_every=100, seed=0), data, tmp_path / "run"
    )
    assert longer.resume() and longer.start_epoch == 4
    assert len(longer.run()) == 5
    save_checkpoint(tmp_path / "copy.safetensors", longer.checkpoint())
