"""`indexer prepare`, `indexer train` and `indexer evaluate`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import torch
import typer

from catalog.settings import get_settings
from model.choices import Backbone, EdgeDetectorName, Fusion, NegativeMining, PhotoPrecision
from model.edges import EdgeWeightsMissing
from model.factory import resolve_device
from training.datasets import category_split, read_folder_per_class, read_tuberlin_sketches, write_split
from training.evaluation import evaluate_checkpoint, record_metrics, write_figures
from training.runs import TrainingData, fill, model_settings, run_training
from training.training import TrainConfig


def prepare(
    dataset: Annotated[str, typer.Option(help="sketchy or tuberlin")],
    root: Annotated[Path, typer.Option(help="dataset root (official layout)")],
    photos: Annotated[Path | None, typer.Option(help="TU-Berlin Extended photos, folder per class")] = None,
    out: Annotated[Path | None, typer.Option(help="where to write split files (default ROOT/splits)")] = None,
    seed: int = 0,
) -> None:
    """Write category-level split files (50 query sketches per class for Sketchy, 10 for TU-Berlin)."""
    out = out or root / "splits"
    if dataset == "sketchy":
        sketches = read_folder_per_class(root / "sketch" / "tx_000000000000")
        photo_items = read_folder_per_class(root / "photo" / "tx_000000000000")
        per_class = 50
    elif dataset == "tuberlin":
        if photos is None:
            raise typer.BadParameter("TU-Berlin needs --photos (the Extended photos, folder per class)")
        sketches, photo_items, per_class = (
            read_tuberlin_sketches(root),
            read_folder_per_class(photos),
            10,
        )
    else:
        raise typer.BadParameter("dataset must be 'sketchy' or 'tuberlin'")
    train, test = category_split(sketches, per_class, seed)
    common = root.resolve()
    if photos is not None:
        common = Path(os.path.commonpath([common, photos.resolve()]))
    write_split(train, common, out / "train_sketches.txt")
    write_split(test, common, out / "test_sketches.txt")
    write_split(photo_items, common, out / "photos.txt")
    typer.echo(f"{len(train)} training and {len(test)} query sketches, {len(photo_items)} photos -> {out}")
    if common != root.resolve():
        typer.echo(f"paths are relative to {common}: pass --root {common} to train/evaluate")


def train(
    root: Annotated[Path, typer.Option(help="dataset root the split files are relative to")],
    out: Annotated[Path, typer.Option(help="run directory: checkpoints, history, curves")],
    sketches: Annotated[Path, typer.Option(help="training sketches: split file or class folders")] = Path(
        "splits/train_sketches.txt"
    ),
    photos: Annotated[Path, typer.Option(help="training photos: split file or class folders")] = Path(
        "splits/photos.txt"
    ),
    extra_sketches: Annotated[
        list[Path] | None,
        typer.Option(help="more training sketches (split files), e.g. TU-Berlin"),
    ] = None,
    extra_validation: Annotated[
        Path | None, typer.Option(help="more validation sketches (split file), e.g. TU-Berlin")
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="start from this checkpoint instead of ImageNet weights")
    ] = None,
    epochs: int = 15,
    batch_size: int = 32,
    lr: Annotated[
        float,
        typer.Option(help="heads' learning rate; backbones train at --backbone-lr-scale of it"),
    ] = 3e-3,
    bits: int = 64,
    image_size: int = 128,
    backbone: Annotated[
        Backbone,
        typer.Option(help="Lite2 needs the lite2 extra; ResNet/VGG download their weights"),
    ] = Backbone.LITE0,
    edge_detector: EdgeDetectorName = EdgeDetectorName.CANNY,
    edge_weights: Annotated[
        Path | None, typer.Option(help="the edge detector's weights file, if not bundled (PiDiNet)")
    ] = None,
    use_attention: Annotated[bool, typer.Option("--attention/--no-attention")] = True,
    use_edge: Annotated[bool, typer.Option("--edge/--no-edge")] = True,
    share_sketch_edge: bool = True,
    fusion: Fusion = Fusion.SUM,
    alpha: float = 5.0,
    beta: float = 0.05,
    margin: Annotated[float | None, typer.Option(help="triplet margin; default bits/4")] = None,
    mining: NegativeMining = NegativeMining.ALL,
    class_pull: Annotated[
        float,
        typer.Option(help="intra-class pull towards photos other than the sketch's own (paper: 1)"),
    ] = 1.0,
    instance: Annotated[
        float,
        typer.Option(
            help="weight of the instance-level triplet (own photo above its class); beyond the paper"
        ),
    ] = 0.0,
    instance_margin: Annotated[float | None, typer.Option(help="its margin; default bits/16")] = None,
    balance: Annotated[
        float, typer.Option(help="weight of bit balance + decorrelation; beyond the paper")
    ] = 0.0,
    distill: Annotated[
        float,
        typer.Option(
            help="weight of ImageNet knowledge preservation (SAKE) on photo codes; beyond the paper"
        ),
    ] = 0.0,
    distill_temperature: float = 2.0,
    own_photo_prob: Annotated[
        float, typer.Option(help="how often a sketch's positive is the photo it was drawn from")
    ] = 0.5,
    class_group: Annotated[
        int,
        typer.Option(help="sketches of one class together in a batch (instance negatives); 1: plain shuffle"),
    ] = 1,
    head_rescale: Annotated[
        float | None,
        typer.Option(help="with --init: scale the hash heads' last layer (same bits, unsaturated sigmoids)"),
    ] = None,
    reinit_heads: Annotated[
        bool, typer.Option(help="with --init: start the hash heads and classifiers afresh (backbones kept)")
    ] = False,
    validation: Annotated[bool, typer.Option(help="hold out sketches for periodic evaluation")] = True,
    eval_every: int = 4,
    freeze_low_level: Annotated[
        bool, typer.Option(help="keep the backbones' low-level stages fixed")
    ] = False,
    freeze_bn_stats: Annotated[
        bool,
        typer.Option(help="keep the backbones' ImageNet batch-norm statistics while fine-tuning"),
    ] = True,
    backbone_lr_scale: Annotated[float, typer.Option(help="backbone learning rate as a share of --lr")] = 0.1,
    photo_lr_scale: Annotated[
        float | None,
        typer.Option(help="photo backbone's share of --lr (default: --backbone-lr-scale); beyond the paper"),
    ] = None,
    stroke_augment: Annotated[
        bool,
        typer.Option(help="drop stroke pieces and wobble lines (drawings from memory); beyond the paper"),
    ] = False,
    seed: int = 0,
    resume: bool = True,
    device: str = "auto",
    time_budget_s: Annotated[
        float | None, typer.Option("--time-budget", help="stop after this many seconds")
    ] = None,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after",
            min=1,
            help="stop after this many epochs; the learning-rate schedule still spans --epochs",
        ),
    ] = None,
    max_steps_per_epoch: Annotated[
        int | None, typer.Option("--max-steps", help="cap steps per epoch (smoke runs)")
    ] = None,
    cache_dir: Path = Path("data/cache/edges"),
) -> None:
    """Train CSCAN; checkpoints every epoch to OUT/last.safetensors and resumes from OUT if present."""
    options = dict(locals())  # every option by name: the configs are filled from it in one step
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = fill(TrainingData, options)
    data.extra_sketches = extra_sketches or []
    try:
        run_training(
            data,
            model_settings(options),
            fill(TrainConfig, options),
            out,
            init,
            str(resolve_device(device)),
            resume,
            log=typer.echo,
        )
    except EdgeWeightsMissing as exc:
        raise typer.BadParameter(str(exc), param_hint="--edge-weights") from None
    typer.echo(f"checkpoint: {out / 'last.safetensors'}")


def evaluate(
    checkpoint: Annotated[Path, typer.Option(help="CSCAN checkpoint")],
    queries: Annotated[Path, typer.Option(help="query sketches: split file or class folders")],
    gallery: Annotated[Path, typer.Option(help="gallery photos: split file or class folders")],
    root: Annotated[Path | None, typer.Option(help="root the split files' paths are relative to")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics here")] = None,
    figures: Annotated[
        Path | None, typer.Option(help="folder for the PR curve and example grid PNGs")
    ] = None,
    device: str = "auto",
    batch: int = 64,
    cache_dir: Path = Path("data/cache/edges"),
    edge_weights: Annotated[
        Path | None, typer.Option(help="the edge detector's weights file, if not bundled (PiDiNet)")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="evaluate at another input size than trained (a speed trial)")
    ] = None,
    record: Annotated[
        str | None,
        typer.Option(help="store the metrics in the checkpoint under this key (release step)"),
    ] = None,
    photo_precision: Annotated[
        PhotoPrecision,
        typer.Option(
            help="the photo branch's arithmetic (int8: ONNX Runtime, SKETCH_ONNX_CACHE_DIR's graph)"
        ),
    ] = PhotoPrecision.FP32,
) -> None:
    """Tie-aware Hamming mAP (full ranking), mAP@200, P@10, P@200, the same for the asymmetric and
    continuous rankings; where sketches name their source photo, acc@1/10 of it (instance); the codes'
    spread; "more like this" synset precision. See training.evaluation.score."""
    try:
        evaluation = evaluate_checkpoint(
            checkpoint,
            queries,
            gallery,
            root,
            device,
            batch,
            cache_dir,
            edge_weights,
            image_size,
            log=lambda line: typer.echo(line, err=True),
            photo_precision=photo_precision,
            onnx_cache=get_settings().onnx_cache,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except RuntimeError as exc:  # e.g. int8 without its graph: what to run, not a traceback
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    result = evaluation.result
    typer.echo(json.dumps(result, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    if record:
        record_metrics(checkpoint, result, record, queries, gallery)
    if figures:
        write_figures(evaluation, figures)
