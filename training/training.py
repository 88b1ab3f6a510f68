"""Training CSCAN: batches of (sketch, positive photo, its edge map) with in-batch negatives."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from model.backbones import build_teacher
from model.checkpoint import Checkpoint, save_checkpoint
from model.choices import NegativeMining
from model.config import ModelConfig
from model.cscan import CSCAN
from model.edges import EdgeDetector, build_edge_detector
from model.edges.cache import EdgeCache, content_hash
from model.files import atomic_write
from model.losses import LossWeights, PairInfo, cscan_loss
from model.preprocessing import SketchAugment, preprocess_photo_pair, preprocess_sketch
from training.datasets import Item, load_images


@dataclass
class TrainConfig:
    epochs: int = 15
    batch_size: int = 32
    lr: float = 3e-3  # heads; the pretrained backbones train at lr * backbone_lr_scale
    backbone_lr_scale: float = 0.1
    # Beyond the paper: the photo branch's own share of lr (None: backbone_lr_scale). A lower rate keeps
    # more of ImageNet's generality for photos the model never trains on (users' galleries).
    photo_lr_scale: float | None = None
    weight_decay: float = 1e-4
    own_photo_prob: float = 0.5  # how often the positive is the photo the sketch was drawn from
    # Sketches of one class that sit together in a batch (drawn from different photos where the class
    # has them): with 2 or more, every batch holds other photos of an anchor's class, the negatives of
    # the instance-level triplet. 1: batches are a plain shuffle (the paper).
    class_group: int = 1
    mining: NegativeMining = NegativeMining.ALL
    loss: LossWeights = field(default_factory=LossWeights)
    eval_every: int = 2
    freeze_low_level: bool = False  # keep the backbones' pretrained low-level stages fixed
    # Keep the backbones' ImageNet batch-norm statistics: batches of 32 alternating sketches and edge maps
    # through one shared backbone give noisy statistics, and the running averages (momentum 0.01) lag far
    # behind in a short run, so evaluation would see statistics the weights were not trained with.
    freeze_bn_stats: bool = True
    seed: int = 0
    max_steps_per_epoch: int | None = None
    time_budget_s: float | None = None
    # Stop once this many epochs are done, the learning-rate schedule still spanning ``epochs``: the
    # first part of a longer run, for comparisons at equal budget. None: run every epoch.
    stop_after: int | None = None
    # Sketches of classes without photos (e.g. TU-Berlin classes outside Sketchy) train only the sketch
    # branch and its classifier: this many of them join every step.
    sketch_only_batch: int = 8
    # Warm starts only: multiply the hash heads' last layer by this at the start. The bits stay the same
    # (the signs of the pre-activations do), but a trained model's sigmoids sit deep in saturation
    # (median |pre-activation| 6.5 in the committed checkpoint, slope 0.0015), so new loss terms could
    # not move its codes; at 0.25 the slope is ~100x larger. None: unchanged.
    head_rescale: float | None = None
    # Warm starts only: keep the backbones (and attention) but start the hash heads and classifiers
    # afresh, so new loss terms shape codes that are not yet saturated into class labels.
    reinit_heads: bool = False
    # Beyond the paper: make Sketchy's careful tracings look like drawings from memory (stroke pieces
    # dropped, lines wobbled). Measured in the model card; off unless asked for.
    stroke_augment: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainData:
    """Images decoded once into memory; small datasets (like the Sketchy subset) fit easily."""

    sketches: list[Image.Image]
    sketch_labels: list[int]
    sketch_sources: list[str | None]
    photos: list[Image.Image]
    edges: list[Image.Image | None]
    photo_labels: list[int]
    photo_ids: list[str]
    by_class: dict[int, list[int]]
    by_id: dict[str, int]
    sketch_only: list[Image.Image] = field(default_factory=list)
    sketch_only_labels: list[int] = field(default_factory=list)
    # (photos, 1000) ImageNet logits of the backbone's own classifier for each photo (distillation only)
    teacher_logits: torch.Tensor | None = None


TEACHER_SIZE = 224  # the resolution the ImageNet teachers were trained at


@torch.inference_mode()
def teacher_logits(
    backbone: str, photos: list[Image.Image], device: str = "cpu", batch: int = 64
) -> torch.Tensor:
    """(N, 1000) logits of the backbone's ImageNet classifier on each whole photo, computed once: the
    targets of knowledge preservation (the student sees augmented crops of the same photos)."""
    teacher = build_teacher(backbone).to(device)
    out = []
    for start in tqdm(range(0, len(photos), batch), desc="teacher", unit="batch"):
        x = torch.stack(
            [preprocess_photo_pair(p, None, TEACHER_SIZE)[0] for p in photos[start : start + batch]]
        )
        out.append(teacher(x.to(device)).float().cpu())
    return torch.cat(out)


def load_photos(items: list[Item], detector: EdgeDetector | None, cache_dir: Path | None):
    """Decode photos and get their edge maps from ``detector`` (None: a model without the edge branch),
    from the cache when there. Evaluation passes its encoder's own detector, so the two cannot differ."""
    photos, hashes = [], []
    for item in tqdm(items, desc="photos", unit="img"):
        data = item.path.read_bytes()
        hashes.append(content_hash(data))
        with Image.open(item.path) as im:
            photos.append(im.convert("RGB"))
    edges: list[Image.Image | None] = [None] * len(photos)
    if detector is not None:
        cache = EdgeCache(cache_dir or Path(".cache/edges"), detector)
        edges = []
        for start in tqdm(range(0, len(photos), 16), desc=f"edges ({detector.name})", unit="batch"):
            edges.extend(cache.get_many(hashes[start : start + 16], photos[start : start + 16]))
    return photos, edges


def load_train_data(
    sketches: list[Item],
    photos: list[Item],
    config: ModelConfig,
    cache_dir: Path | None,
    device: str = "cpu",
    edge_weights: str | Path | None = None,
    with_teacher: bool = False,
) -> TrainData:
    """Sketches of a class with photos become triplet anchors; the rest train the sketch classifier only.
    ``with_teacher`` adds the ImageNet teacher's logits of every photo (for distillation).

    Raises EdgeWeightsMissing when the edge detector's weights are not there (PiDiNet needs a path)."""
    index = {name: i for i, name in enumerate(config.class_names)}
    detector = None
    if config.use_edge:
        detector = build_edge_detector(config.edge_detector, device, edge_weights, size=config.edge_size)
    photo_images, edges = load_photos(photos, detector, cache_dir)
    photo_classes = {p.label for p in photos}
    paired = [s for s in sketches if s.label in photo_classes]
    alone = [s for s in sketches if s.label not in photo_classes]
    sketch_images = load_images(paired, "sketches")
    photo_labels = [index[p.label] for p in photos]
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, label in enumerate(photo_labels):
        by_class[label].append(i)
    return TrainData(
        sketch_images,
        [index[s.label] for s in paired],
        [s.source for s in paired],
        photo_images,
        edges,
        photo_labels,
        [p.path.stem for p in photos],
        dict(by_class),
        {p.path.stem: i for i, p in enumerate(photos)},
        load_images(alone, "sketches") if alone else [],
        [index[s.label] for s in alone],
        cached_teacher_logits(config.backbone, photos, photo_images, cache_dir, device)
        if with_teacher
        else None,
    )


def cached_teacher_logits(
    backbone: str, items: list[Item], images: list[Image.Image], cache_dir: Path | None, device: str
) -> torch.Tensor:
    """``teacher_logits``, kept beside the edge cache under a key of the backbone and the photos' bytes:
    the teacher costs minutes on a CPU and every run (and resume) of one data set needs the same."""
    digest = hashlib.sha256(backbone.encode())
    for item in items:
        digest.update(content_hash(item.path.read_bytes()).encode())
    path = (cache_dir or Path(".cache/edges")).parent / "teacher" / f"{digest.hexdigest()[:32]}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    logits = teacher_logits(backbone, images, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(logits, tmp), durable=False)
    return logits


def epoch_order(data: TrainData, group: int) -> list[int]:
    """Sketch indices for one epoch. With ``group`` > 1, runs of ``group`` sketches of one class, drawn
    from different photos where possible, in random order (a batch of size divisible by ``group`` keeps
    each run whole); else a plain shuffle."""
    order = list(range(len(data.sketches)))
    random.shuffle(order)
    if group <= 1:
        return order
    by_class: dict[int, dict[str | None, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i in order:
        source = data.sketch_sources[i]
        by_class[data.sketch_labels[i]][source if source is not None else f"#{i}"].append(i)
    runs: list[list[int]] = []
    for sources in by_class.values():
        # Deal the sketches out source by source, so neighbours come from different photos.
        queues = list(sources.values())
        dealt: list[int] = []
        while queues:
            dealt.extend(q.pop() for q in queues)
            queues = [q for q in queues if q]
        runs.extend(dealt[k : k + group] for k in range(0, len(dealt), group))
    random.shuffle(runs)
    return [i for run in runs for i in run]


@dataclass
class Batch:
    sketches: torch.Tensor  # (B, 3, S, S)
    photos: torch.Tensor  # (B, 3, S, S)
    edges: torch.Tensor | None  # (B, 3, S, S); None without the edge branch
    labels: torch.Tensor  # (B,)
    pairs: PairInfo  # which photo each position holds, and whether it is the sketch's own


def make_batch(
    data: TrainData,
    sketch_idx: list[int],
    config: ModelConfig,
    train: TrainConfig,
    augment: SketchAugment,
) -> Batch:
    sketches, photos, edges, labels, photo_ids, own = [], [], [], [], [], []
    unmirrored = replace(augment, flip_prob=0.0)
    for i in sketch_idx:
        label = data.sketch_labels[i]
        source = data.sketch_sources[i]
        if source in data.by_id and random.random() < train.own_photo_prob:
            p = data.by_id[source]
        else:
            p = random.choice(data.by_class[label])
        photo_ids.append(p)
        own.append(source in data.by_id and p == data.by_id[source])
        # A sketch and its photo are mirrored together: mirroring only one of them would teach the
        # instance term that a pose and its mirror image match.
        mirror = random.random() < augment.flip_prob
        sketch_t = preprocess_sketch(data.sketches[i], config.image_size, unmirrored)
        sketches.append(torch.flip(sketch_t, dims=[2]) if mirror else sketch_t)
        photo_t, edge_t = preprocess_photo_pair(
            data.photos[p], data.edges[p], config.image_size, augment=True, mirror=mirror
        )
        photos.append(photo_t)
        edges.append(edge_t)
        labels.append(label)
    edge_batch = torch.stack(edges) if config.use_edge else None  # type: ignore[arg-type]
    pairs = PairInfo(torch.tensor(photo_ids), torch.tensor(own, dtype=torch.bool))
    return Batch(torch.stack(sketches), torch.stack(photos), edge_batch, torch.tensor(labels), pairs)


def low_level_modules(model: CSCAN) -> list[torch.nn.Module]:
    return [m for name, m in model.named_children() if name.endswith("_low")]


def backbone_batch_norms(model: CSCAN) -> list[torch.nn.Module]:
    return [
        m
        for name, child in model.named_children()
        if name.endswith(("_low", "_high"))
        for m in child.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]


def param_groups(model: CSCAN, train: TrainConfig) -> list[dict]:
    backbone: list[torch.nn.Parameter] = []
    photo: list[torch.nn.Parameter] = []
    heads: list[torch.nn.Parameter] = []
    frozen = set()
    if train.freeze_low_level:
        frozen = {id(p) for m in low_level_modules(model) for p in m.parameters()}
    for name, param in model.named_parameters():
        if id(param) in frozen:
            param.requires_grad_(False)
            continue
        module = name.split(".")[0]
        if module in ("photo_low", "photo_high"):
            photo.append(param)
        else:
            (backbone if module.endswith(("_low", "_high")) else heads).append(param)
    photo_scale = train.backbone_lr_scale if train.photo_lr_scale is None else train.photo_lr_scale
    return [
        {"params": backbone, "lr": train.lr * train.backbone_lr_scale},
        {"params": photo, "lr": train.lr * photo_scale},
        {"params": heads, "lr": train.lr},
    ]


def warm_start(model: CSCAN, init: Checkpoint) -> None:
    """Start from a trained checkpoint; classifier rows are matched by class name, so a run may add
    classes (new rows keep their fresh initialisation)."""
    state = {k: v.float() for k, v in init.state_dict.items()}
    old = {name: i for i, name in enumerate(init.config.class_names)}
    for prefix in ("sketch_classifier", "photo_classifier"):
        layer: torch.nn.Linear = getattr(model, prefix)
        weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
        for i, name in enumerate(model.config.class_names):
            if name in old:
                weight[i] = state[f"{prefix}.weight"][old[name]]
                bias[i] = state[f"{prefix}.bias"][old[name]]
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = weight, bias
    model.load_state_dict(state)


@torch.no_grad()
def rescale_hash_heads(model: CSCAN, factor: float) -> None:
    """Scale the last linear layer of both hash heads (weights and bias) by ``factor`` > 0: every code
    keeps its bits, its sigmoid moves towards its linear range."""
    if factor <= 0:
        raise ValueError(f"head_rescale must be positive, got {factor}")
    for head in (model.sketch_hash, model.photo_hash):
        last = head[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.mul_(factor)
        last.bias.mul_(factor)


def reset_heads(model: CSCAN) -> None:
    """Fresh initialisation of both hash heads and both classifiers (the backbones are kept)."""
    for part in (model.sketch_hash, model.photo_hash, model.sketch_classifier, model.photo_classifier):
        for module in part.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.BatchNorm1d):
                module.reset_parameters()


def sketch_only_loss(model: CSCAN, data: TrainData, config: ModelConfig, train: TrainConfig, augment, device):
    """Cross-entropy of the sketch classifier on a few sketches that have no photo to pair with."""
    picks = random.sample(range(len(data.sketch_only)), min(train.sketch_only_batch, len(data.sketch_only)))
    x = torch.stack([preprocess_sketch(data.sketch_only[i], config.image_size, augment) for i in picks])
    labels = torch.tensor([data.sketch_only_labels[i] for i in picks], device=device)
    codes = model.encode_sketch(x.to(device)).float()
    return torch.nn.functional.cross_entropy(model.sketch_classifier(2 * codes - 1), labels)


class Trainer:
    """Runs epochs, checkpoints each one (with optimizer state, to resume), evaluates periodically."""

    def __init__(
        self,
        model_config: ModelConfig,
        train: TrainConfig,
        data: TrainData,
        out_dir: Path,
        evaluate=None,
        device: str = "cpu",
        info: dict | None = None,
        init: Checkpoint | None = None,
    ) -> None:
        self.config = model_config
        self.train = train
        self.data = data
        self.out_dir = Path(out_dir)
        self.evaluate = evaluate
        self.device = torch.device(device)
        self.info = info or {}
        seed_everything(train.seed)
        self.model = CSCAN(model_config, pretrained=init is None)
        if init is not None:
            warm_start(self.model, init)
            if train.head_rescale is not None:
                rescale_hash_heads(self.model, train.head_rescale)
            if train.reinit_heads:
                reset_heads(self.model)
        self.model.to(self.device)
        groups = param_groups(self.model, train)
        # Knowledge preservation's student head: the photo code's guess at the teacher's ImageNet classes.
        # A training device only: it is not part of the served network or the checkpoint.
        self.distill_head: torch.nn.Linear | None = None
        if train.loss.distill:
            if data.teacher_logits is None:
                raise ValueError(
                    "distillation needs the teacher's logits: load_train_data(with_teacher=True)"
                )
            self.distill_head = torch.nn.Linear(model_config.bits, data.teacher_logits.shape[1]).to(
                self.device
            )
            groups[-1]["params"] = [*groups[-1]["params"], *self.distill_head.parameters()]
        self.optimizer = torch.optim.AdamW(groups, weight_decay=train.weight_decay)
        steps = len(data.sketches) // train.batch_size
        if train.max_steps_per_epoch:
            steps = min(steps, train.max_steps_per_epoch)
        self.steps_per_epoch = max(1, steps)
        total = self.steps_per_epoch * train.epochs
        warmup = min(50, total // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: (
                min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
            ),
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.history: list[dict] = []
        self.step_losses: list[dict[str, float]] = []  # this process's steps, for diagnostics and tests
        self.start_epoch = 0

    @property
    def state_path(self) -> Path:
        return self.out_dir / "train_state.pt"

    def resume(self) -> bool:
        if not self.state_path.exists():
            return False
        state = torch.load(self.state_path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        if self.distill_head is not None:
            self.distill_head.load_state_dict(state["distill_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        self.start_epoch = state["epoch"] + 1
        random.setstate(state["py_random"])
        torch.set_rng_state(state["torch_random"])
        return True

    def _save_state(self, epoch: int) -> None:
        state = {
            "model": self.model.state_dict(),
            "distill_head": self.distill_head.state_dict() if self.distill_head is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "epoch": epoch,
            "py_random": random.getstate(),
            "torch_random": torch.get_rng_state(),
        }
        atomic_write(self.state_path, lambda tmp: torch.save(state, tmp))

    def checkpoint(self, metrics: dict | None = None) -> Checkpoint:
        info = dict(self.info)
        info["train"] = {**asdict(self.train), "epochs_done": len(self.history)}
        if metrics:
            info["metrics"] = {"validation": metrics}
        return Checkpoint(self.config, self.model.state_dict(), info)

    def run(self) -> list[dict]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        augment = (
            SketchAugment(stroke_dropout=0.15, jitter=0.02) if self.train.stroke_augment else SketchAugment()
        )
        started = time.monotonic()
        for epoch in range(self.start_epoch, self.train.epochs):
            self.model.train()
            if self.train.freeze_low_level:
                for module in low_level_modules(self.model):
                    module.eval()  # frozen layers keep their ImageNet batch-norm statistics too
            if self.train.freeze_bn_stats:
                for module in backbone_batch_norms(self.model):
                    module.eval()
            order = epoch_order(self.data, self.train.class_group)
            sums: dict[str, float] = defaultdict(float)
            epoch_start = time.monotonic()
            bar = tqdm(
                range(self.steps_per_epoch),
                desc=f"epoch {epoch + 1}/{self.train.epochs}",
                unit="step",
            )
            for step in bar:
                idx = order[step * self.train.batch_size : (step + 1) * self.train.batch_size]
                batch = make_batch(self.data, idx, self.config, self.train, augment)
                labels = batch.labels.to(self.device)
                pairs = PairInfo(batch.pairs.photo_ids.to(self.device), batch.pairs.own.to(self.device))
                edge = batch.edges.to(self.device) if batch.edges is not None else None
                with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
                    outputs = self.model(batch.sketches.to(self.device), batch.photos.to(self.device), edge)
                outputs = {k: v.float() for k, v in outputs.items()}
                if self.distill_head is not None:
                    assert self.data.teacher_logits is not None
                    outputs["distill_logits"] = self.distill_head(2 * outputs["photo_codes"] - 1)
                    outputs["teacher_logits"] = self.data.teacher_logits[batch.pairs.photo_ids].to(
                        self.device
                    )
                losses = cscan_loss(outputs, labels, self.train.loss, self.train.mining, pairs)
                if self.data.sketch_only and self.train.sketch_only_batch:
                    with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
                        alone = sketch_only_loss(
                            self.model, self.data, self.config, self.train, augment, self.device
                        )
                    losses["sketch_only_cls"] = alone
                    losses["total"] = losses["total"] + self.train.loss.alpha * alone
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(losses["total"]).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                values = {key: float(value.detach()) for key, value in losses.items()}
                self.step_losses.append(values)
                for key, value in values.items():
                    sums[key] += value
                bar.set_postfix({k: f"{v / (step + 1):.3f}" for k, v in sums.items()})
            record: dict[str, Any] = {k: v / self.steps_per_epoch for k, v in sums.items()}
            record["epoch"] = epoch + 1
            record["seconds"] = time.monotonic() - epoch_start
            last = epoch + 1 == self.train.epochs
            if self.evaluate is not None and ((epoch + 1) % self.train.eval_every == 0 or last):
                self.model.eval()
                record["val"] = self.evaluate(self.model)
                tqdm.write(f"epoch {epoch + 1}: validation {json.dumps(record['val'])}")
            self.history.append(record)
            self._save_state(epoch)
            save_checkpoint(self.out_dir / "last.safetensors", self.checkpoint(record.get("val")))
            if "val" in record and record["val"]["selection"] >= max(
                h["val"]["selection"] for h in self.history if "val" in h
            ):
                save_checkpoint(self.out_dir / "best.safetensors", self.checkpoint(record["val"]))
            (self.out_dir / "history.json").write_text(json.dumps(self.history, indent=1))
            if self.train.time_budget_s and time.monotonic() - started > self.train.time_budget_s:
                tqdm.write("time budget reached: stopping")
                break
            if self.train.stop_after is not None and epoch + 1 >= self.train.stop_after:
                tqdm.write(f"stopping after epoch {epoch + 1} of {self.train.epochs}, as asked")
                break
        return self.history
