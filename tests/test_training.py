"""A short, real training run on real sketches and photos lowers the loss, checkpoints and resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from model.choices import Backbone, Fusion
from model.config import ModelConfig
from model.cscan import CSCAN
from model.factory import build_model
from training.datasets import Item, read_split
from training.training import TrainConfig, Trainer, load_train_data, param_groups, warm_start

CLASSES = ("cat", "teapot", "bicycle", "airplane")


def four_classes(
    sketchy: Path, photo_classes: tuple[str, ...] = CLASSES
) -> tuple[list[Item], list[Item], ModelConfig]:
    """The training sketches of CLASSES, the photos of ``photo_classes``, and a 64 px config for them."""
    sketches = [s for s in read_split(sketchy / "splits" / "train_sketches.txt") if s.label in CLASSES]
    photos = [p for p in read_split(sketchy / "splits" / "photos.txt") if p.label in photo_classes]
    config = ModelConfig(image_size=64, num_classes=4, class_names=sorted(CLASSES), edge_detector="canny")
    return sketches, photos, config


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_resumes(sketchy: Path, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    sketches, photos, config = four_classes(sketchy)
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


def test_warm_start_matches_classifier_rows_by_class_name() -> None:
    old_config = ModelConfig(image_size=64, num_classes=2, class_names=["cat", "dog"], edge_detector="canny")
    old = CSCAN(old_config, pretrained=False)
    new_config = ModelConfig(
        image_size=64, num_classes=3, class_names=["ant", "cat", "dog"], edge_detector="canny"
    )
    new = CSCAN(new_config, pretrained=False)
    warm_start(new, Checkpoint(old_config, old.state_dict()))
    for prefix in ("sketch_classifier", "photo_classifier"):
        old_w, new_w = getattr(old, prefix).weight, getattr(new, prefix).weight
        torch.testing.assert_close(new_w[1:], old_w)  # cat and dog moved down one row
        assert not torch.equal(new_w[0], old_w[0])  # the new class keeps its own initialisation
    torch.testing.assert_close(new.sketch_hash[0].weight, old.sketch_hash[0].weight)


@pytest.mark.slow
def test_sketches_without_photos_train_only_the_sketch_classifier(sketchy: Path, tmp_path: Path) -> None:
    sketches, photos, config = four_classes(sketchy, photo_classes=CLASSES[:3])
    data = load_train_data(sketches, photos, config, tmp_path / "edges")
    airplane = config.class_names.index("airplane")
    assert data.sketch_only and set(data.sketch_only_labels) == {airplane}
    assert airplane not in data.sketch_labels
    trainer = Trainer(
        config, TrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=2), data, tmp_path / "r"
    )
    trainer.run()
    assert all("sketch_only_cls" in step for step in trainer.step_losses)


def test_photo_branch_gets_its_own_learning_rate_when_asked() -> None:
    config = ModelConfig(image_size=64, num_classes=2, class_names=["cat", "dog"], edge_detector="canny")
    model = CSCAN(config, pretrained=False)
    photo_ids = {id(p) for m in (model.photo_low, model.photo_high) for p in m.parameters()}

    def lr_of_photo_params(train: TrainConfig) -> list[float]:
        groups = param_groups(model, train)
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
        return sorted({g["lr"] for g in groups for p in g["params"] if id(p) in photo_ids})

    assert lr_of_photo_params(TrainConfig(lr=1e-3, backbone_lr_scale=0.1)) == [pytest.approx(1e-4)]
    assert lr_of_photo_params(TrainConfig(lr=1e-3, photo_lr_scale=0.02)) == [pytest.approx(2e-5)]
    # the sketch/edge backbone keeps backbone_lr_scale
    sketch = next(model.sketch_low.parameters())
    groups = param_groups(model, TrainConfig(lr=1e-3, photo_lr_scale=0.02))
    assert [g["lr"] for g in groups if any(p is sketch for p in g["params"])] == [pytest.approx(1e-4)]


def _class_folders(sketchy: Path, split: str, out: Path) -> Path:
    """Two classes of the shared data as class folders of symlinks (nothing copied)."""
    for item in read_split(sketchy / "splits" / split):
        if item.label in ("cat", "teapot") and len(list((out / item.label).glob("*"))) < 8:
            (out / item.label).mkdir(parents=True, exist_ok=True)
            (out / item.label / item.path.name).symlink_to(item.path)
    return out


@pytest.mark.slow
def test_init_from_a_checkpoint_of_another_input_size_fine_tunes_at_the_new_size(
    sketchy: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from indexer.cli import app

    sketches = _class_folders(sketchy, "train_sketches.txt", tmp_path / "sketches")
    photos = _class_folders(sketchy, "photos.txt", tmp_path / "photos")

    def train(out: str, size: int, *more: str):  # type: ignore[no-untyped-def]
        args = ["train", "--root", str(tmp_path), "--out", str(tmp_path / out), "--sketches", str(sketches)]
        args += ["--photos", str(photos), "--epochs", "1", "--max-steps", "1", "--batch-size", "4"]
        args += ["--no-validation", "--image-size", str(size), "--cache-dir", str(tmp_path / "edges"), *more]
        return CliRunner().invoke(app, args)

    assert train("small", 64).exit_code == 0
    result = train("large", 96, "--init", str(tmp_path / "small" / "last.safetensors"))
    assert result.exit_code == 0, result.output
    assert "trained at 64 px: fine-tuning at 96 px" in result.output
    assert load_checkpoint(tmp_path / "large" / "last.safetensors").config.image_size == 96


def test_train_cli_refuses_an_unknown_choice_and_lists_the_models_own(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from indexer.cli import app

    result = CliRunner().invoke(
        app,
        ["train", "--root", str(tmp_path), "--out", str(tmp_path / "run"), "--backbone", "efficientnet_b9"],
    )
    assert result.exit_code == 2 and "efficientnet_lite2" in result.output  # the choices, no traceback


def test_a_checkpoint_config_with_an_unknown_choice_names_it() -> None:
    with pytest.raises(ValueError, match="unknown edge detector 'sobel'; choose one of 'canny', 'hed'"):
        ModelConfig.from_dict({"edge_detector": "sobel"})
    config = ModelConfig.from_dict({"backbone": "efficientnet_lite2", "fusion": "concat"})
    assert config.backbone is Backbone.LITE2 and config.fusion is Fusion.CONCAT  # plain JSON strings in


@pytest.mark.slow
def test_pidinet_training_takes_its_weights_and_refuses_cleanly_without(
    sketchy: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from indexer.cli import app

    weights = sketchy.parent.parent / "weights" / "pidinet" / "table5_pidinet-tiny.pth"
    sketches = _class_folders(sketchy, "train_sketches.txt", tmp_path / "sketches")
    photos = _class_folders(sketchy, "photos.txt", tmp_path / "photos")

    def train(*more: str):  # type: ignore[no-untyped-def]
        args = ["train", "--root", str(tmp_path), "--out", str(tmp_path / "run"), "--sketches", str(sketches)]
        args += ["--photos", str(photos), "--epochs", "1", "--max-steps", "1", "--batch-size", "4"]
        args += ["--no-validation", "--image-size", "64", "--edge-detector", "pidinet", *more]
        return CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path / "edges")])

    refused = train()
    message = " ".join(refused.output.replace("│", " ").split())  # unwrap the error box
    assert refused.exit_code == 2 and "needs its weights" in message  # a message, not a traceback
    trained = train("--edge-weights", str(weights))
    assert trained.exit_code == 0, trained.output
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").config.edge_detector == "pidinet"


def test_epoch_order_keeps_a_class_together_from_different_photos() -> None:
    import random

    from training.training import TrainData, epoch_order

    labels = [0, 0, 0, 0, 1, 1, 2]
    sources = ["a", "a", "b", "b", "c", "d", None]
    data = TrainData([], labels, sources, [], [], [], [], {}, {})  # type: ignore[arg-type]
    data.sketches = [None] * len(labels)  # type: ignore[list-item]
    random.seed(3)
    order = epoch_order(data, group=2)
    assert sorted(order) == list(range(7))
    # runs of two sketches of one class (the lone sketch of class 2 is a run of one), in any order
    runs, i = [], 0
    while i < len(order):
        size = 1 if labels[order[i]] == 2 else 2
        runs.append(order[i : i + size])
        i += size
    assert all(len({labels[j] for j in run}) == 1 for run in runs)
    # class 0's four sketches come from two photos: each run holds both, never one photo twice
    assert all(sources[run[0]] != sources[run[1]] for run in runs if labels[run[0]] == 0)


@pytest.mark.slow
def test_training_with_the_instance_balance_and_distillation_terms_resumes(
    sketchy: Path, tmp_path: Path
) -> None:
    from model.losses import LossWeights

    torch.set_num_threads(2)
    sketches, photos, config = four_classes(sketchy)
    data = load_train_data(sketches, photos, config, tmp_path / "edges", with_teacher=True)
    assert data.teacher_logits is not None and data.teacher_logits.shape == (len(photos), 1000)
    # cached: a second load reads the same logits from disk
    again = load_train_data(sketches, photos, config, tmp_path / "edges", with_teacher=True)
    assert again.teacher_logits is not None
    torch.testing.assert_close(again.teacher_logits, data.teacher_logits)
    loss = LossWeights(instance=1.0, balance=0.2, distill=1.0, class_pull=0.25)
    train = TrainConfig(
        epochs=1, batch_size=8, max_steps_per_epoch=3, class_group=2, own_photo_prob=1.0, loss=loss
    )
    trainer = Trainer(config, train, data, tmp_path / "run")
    trainer.run()
    assert {"instance", "balance", "distill"} <= set(trainer.step_losses[0])
    assert any(s["instance"] > 0 for s in trainer.step_losses)  # batches held same-class photos
    longer = Trainer(
        config,
        TrainConfig(epochs=2, batch_size=8, max_steps_per_epoch=3, class_group=2, loss=loss),
        data,
        tmp_path / "run",
    )
    assert longer.resume()
    assert longer.distill_head is not None and trainer.distill_head is not None
    torch.testing.assert_close(longer.distill_head.weight, trainer.distill_head.weight)
    # the student head is a training device: the checkpoint holds the served network only
    assert not any(k.startswith("distill") for k in longer.checkpoint().state_dict)


def test_fill_takes_fields_by_name_into_nested_configs() -> None:
    from model.losses import LossWeights
    from training.runs import fill, model_settings

    options = {"epochs": 3, "instance": 2.0, "alpha": 1.0, "use_attention": False, "out": Path("x")}
    train = fill(TrainConfig, options)
    assert train.epochs == 3 and train.loss == LossWeights(alpha=1.0, instance=2.0)
    assert train.batch_size == TrainConfig().batch_size  # not given: the default
    assert model_settings(options) == {"use_attention": False}


@pytest.mark.slow
def test_train_and_evaluate_cli_carry_every_option_and_report_instance_figures(
    sketchy: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from indexer.cli import app

    sketches = _class_folders(sketchy, "train_sketches.txt", tmp_path / "sketches")
    photos = _class_folders(sketchy, "photos.txt", tmp_path / "photos")
    args = ["train", "--root", str(tmp_path), "--out", str(tmp_path / "run"), "--sketches", str(sketches)]
    args += ["--photos", str(photos), "--epochs", "1", "--max-steps", "1", "--batch-size", "4"]
    args += ["--no-validation", "--image-size", "64", "--cache-dir", str(tmp_path / "edges")]
    args += ["--no-attention", "--instance", "2", "--class-group", "2", "--time-budget", "900"]
    args += ["--stop-after", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert ckpt.config.use_attention is False and ckpt.config.image_size == 64
    train = ckpt.info["train"]
    assert (train["loss"]["instance"], train["class_group"], train["time_budget_s"]) == (2.0, 2, 900)
    assert train["stop_after"] == 1

    out = tmp_path / "eval.json"
    evaluate = ["evaluate", "--checkpoint", str(tmp_path / "run" / "last.safetensors")]
    evaluate += ["--queries", str(sketches), "--gallery", str(photos), "--device", "cpu"]
    evaluate += ["--cache-dir", str(tmp_path / "edges"), "--json", str(out), "--record", "smoke"]
    evaluate += ["--figures", str(tmp_path / "figures")]
    result = CliRunner().invoke(app, evaluate)
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    # the symlinked sketches are named <photo>-<k>.png and their photos are in the gallery
    instance = figures["instance"]["asymmetric"]
    assert instance["n_queries"] == figures["n_queries"] == 16
    assert instance["class_acc@1_chance"] == pytest.approx(1 / 8)
    assert figures["codes"]["n_codes"] == 16
    recorded = load_checkpoint(tmp_path / "run" / "last.safetensors").info["metrics"]["smoke"]
    assert recorded["mAP"] == pytest.approx(figures["mAP"]) and "class_acc@10" in recorded
    assert (tmp_path / "figures" / "pr_curve.png").exists()


def test_rescaling_the_hash_heads_keeps_every_bit_and_unsaturates_the_sigmoid() -> None:
    from training.training import rescale_hash_heads

    torch.manual_seed(0)
    config = ModelConfig(image_size=64, num_classes=2, class_names=["a", "b"], edge_detector="canny")
    model = CSCAN(config, pretrained=False).eval()
    with torch.no_grad():
        model.sketch_hash[-1].weight.mul_(40)  # a saturated head, as after long training
        sketch = torch.rand(4, 3, 64, 64)
        before = model.encode_sketch(sketch)
        rescale_hash_heads(model, 0.25)
        after = model.encode_sketch(sketch)
    assert torch.equal(before >= 0.5, after >= 0.5)
    assert (after - 0.5).abs().mean() < (before - 0.5).abs().mean()
    with pytest.raises(ValueError, match="positive"):
        rescale_hash_heads(model, 0.0)


def test_a_sketch_and_its_own_photo_are_mirrored_together() -> None:
    import random

    from PIL import Image, ImageDraw

    from model.preprocessing import SketchAugment
    from training.training import TrainData, make_batch

    def l_shape(mode: str) -> Image.Image:
        image = Image.new(mode, (64, 64), "white")
        draw = ImageDraw.Draw(image)
        draw.line([(10, 5), (10, 58)], fill="black", width=4)  # a stroke on the left...
        draw.line([(10, 58), (40, 58)], fill="black", width=4)  # ...and a foot to the right
        return image

    data = TrainData([l_shape("L")], [0], ["p"], [l_shape("RGB")], [None], [0], ["p"], {0: [0]}, {"p": 0})
    config = ModelConfig(
        image_size=32, num_classes=1, class_names=["a"], use_edge=False, edge_detector="canny"
    )
    train = TrainConfig(own_photo_prob=1.0)
    augment = SketchAugment(thicken_prob=0.0, margin_range=(0.1, 0.1), shift=0.0, flip_prob=0.5)
    random.seed(0)
    sides = set()
    for _ in range(16):
        batch = make_batch(data, [0], config, train, augment)
        assert batch.pairs.own.tolist() == [True]

        def ink_on_left(image: torch.Tensor) -> bool:
            ink = (image.mean(0) < 0).float()  # dark pixels (inputs are in [-1, 1])
            return bool(ink[:, :16].sum() > ink[:, 16:].sum())

        sketch_left, photo_left = ink_on_left(batch.sketches[0]), ink_on_left(batch.photos[0])
        assert sketch_left == photo_left
        sides.add(sketch_left)
    assert sides == {True, False}  # both orientations were drawn


def test_reset_heads_starts_the_heads_afresh_and_keeps_the_backbones() -> None:
    from training.training import reset_heads

    config = ModelConfig(image_size=64, num_classes=2, class_names=["a", "b"], edge_detector="canny")
    model = CSCAN(config, pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reset_heads(model)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("photo_hash.") for k in changed) and any(
        k.startswith("sketch_classifier.") for k in changed
    )
    assert not any(k.startswith(("photo_low", "photo_high", "sketch_low", "sketch_high")) for k in changed)


@pytest.mark.slow
def test_stop_after_runs_the_first_epochs_of_the_longer_schedule(sketchy: Path, tmp_path: Path) -> None:
    """--stop-after N: the first N epochs of an --epochs run, exactly (the schedule still spans all of
    them), so two variants can be compared at an equal budget cut from the same schedule."""
    sketches, photos, config = four_classes(sketchy)
    data = load_train_data(sketches, photos, config, tmp_path / "edges")
    train = TrainConfig(epochs=4, batch_size=8, max_steps_per_epoch=2, stop_after=1)
    stopped = Trainer(config, train, data, tmp_path / "stopped")
    stopped.run()
    assert [h["epoch"] for h in stopped.history] == [1]
    # the learning rate is where a 4-epoch schedule has it after one epoch (cosine, no warm-up at 8
    # steps): 0.85 of its peak, not 0 as at the end of a 1-epoch schedule
    scheduler = stopped.scheduler
    assert scheduler.get_last_lr()[0] / scheduler.base_lrs[0] == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 4))
    )
