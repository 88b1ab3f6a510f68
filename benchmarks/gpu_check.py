"""The GPU paths measured on an NVIDIA machine, against the CPU in the same run, into one JSON.

    python -m benchmarks.gpu_check --out $OUT/gpu_check.json          # on a machine with a GPU
    python -m benchmarks.gpu_check --out x.json --allow-cpu --small   # the same code, on a CPU (tests)

Run by ``scripts/gpu_check.sh`` after it installed what the GPU paths need and ran the CUDA tests.
Three figures, each beside its CPU baseline measured in the same process:

- **encoding**: photos a second through the committed checkpoint on CUDA in fp16 autocast (build batches
  of 256), against ONNX Runtime on the CPU; synthetic photos, since ../shared does not travel;
- **search**: ``GpuIndexBinaryFlat`` at 1M and 10M random 64-bit codes, k = 100, one query at a time and
  in a batch of 100, against the CPU's ``IndexBinaryFlat``;
- **training**: one epoch (119 steps of 32 sketches + 32 photos, the committed recipe's batch) of the full
  loss with the optimizer step, on random inputs of the training shape (no data loading), against a few
  steps on the CPU scaled to the same count.

Exits 2 with a message naming the reason when there is no CUDA device (unless ``--allow-cpu``) or FAISS
has no GPU support.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import timed_runs

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "cscan-sketchy-64.safetensors"
EPOCH_STEPS = 119  # the committed recipe: 3,809 paired sketches / batch 32
BATCH = 32


class NoGPU(RuntimeError):
    """What the check needs is not on this machine; the message says what."""


def _timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    return float(np.median(timed_runs(fn, repeats, warmups=1)))


def _synthetic_photos(count: int, size: int = 256):  # type: ignore[no-untyped-def]
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def encoding(device: str, photos: int) -> dict[str, Any]:
    """Photos a second, end to end from decoded photos (edge maps, preprocessing, network)."""
    from model.factory import load_encoder

    images = _synthetic_photos(photos)
    out: dict[str, Any] = {"photos": photos}
    cpu = load_encoder(CHECKPOINT, "cpu")  # ONNX Runtime where installed, as the service runs it
    cpu_s = _timed(lambda: cpu.encode_photos(images[: min(64, photos)], batch_size=64), 1)
    out["cpu_photos_per_s"] = round(min(64, photos) / cpu_s, 1)
    out["cpu_backend"] = cpu.backend
    if device == "cuda":
        gpu = load_encoder(CHECKPOINT, "cuda")
        gpu_s = _timed(lambda: gpu.encode_photos(images, batch_size=256), 2)
        out["gpu_photos_per_s"] = round(photos / gpu_s, 1)
        out["gpu_backend"] = gpu.backend + " fp16 autocast"
        out["speedup"] = round(out["gpu_photos_per_s"] / out["cpu_photos_per_s"], 2)
    return out


def _search_row(device: str, codes: np.ndarray, queries: np.ndarray, k: int) -> dict[str, Any]:
    import faiss

    cpu = faiss.IndexBinaryFlat(64)
    cpu.add(codes)
    row: dict[str, Any] = {"codes": len(codes), "k": k, "queries": len(queries)}
    row["cpu_one_query_ms"] = round(_timed(lambda: cpu.search(queries[:1], k), 5) * 1000, 3)
    row["cpu_batch_ms"] = round(_timed(lambda: cpu.search(queries, k), 2) * 1000, 2)
    if device == "cuda":
        resources = faiss.StandardGpuResources()
        gpu = faiss.GpuIndexBinaryFlat(resources, 64)
        gpu.add(codes)
        row["gpu_one_query_ms"] = round(_timed(lambda: gpu.search(queries[:1], k), 5) * 1000, 3)
        row["gpu_batch_ms"] = round(_timed(lambda: gpu.search(queries, k), 3) * 1000, 2)
        gpu_d, cpu_d = gpu.search(queries[:5], k)[0], cpu.search(queries[:5], k)[0]
        row["gpu_distances_equal_cpu"] = bool(np.array_equal(np.sort(gpu_d, 1), np.sort(cpu_d, 1)))
        row["one_query_speedup"] = round(row["cpu_one_query_ms"] / row["gpu_one_query_ms"], 2)
        row["batch_speedup"] = round(row["cpu_batch_ms"] / row["gpu_batch_ms"], 2)
    return row


def search(device: str, sizes: list[int], k: int, queries: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    return [
        _search_row(
            device,
            rng.integers(0, 256, (n, 8), dtype=np.uint8),
            rng.integers(0, 256, (queries, 8), dtype=np.uint8),
            k,
        )
        for n in sizes
    ]


def training(device: str, steps: int, cpu_steps: int) -> dict[str, Any]:
    """One epoch of the full loss (paper terms + instance, balance, distillation) with AdamW steps."""
    import torch

    from model.checkpoint import load_checkpoint
    from model.cscan import CSCAN
    from model.losses import LossWeights, PairInfo, cscan_loss

    config = load_checkpoint(CHECKPOINT).config
    weights = LossWeights(instance=1.0, balance=0.1, distill=1.0, class_pull=0.25)

    def seconds_per_step(dev: str, count: int) -> float:
        torch.manual_seed(0)
        model = CSCAN(config, pretrained=False).to(dev).train()
        head = torch.nn.Linear(config.bits, 1000).to(dev)
        optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=dev == "cuda")
        size = config.image_size
        x = torch.randn(BATCH, 3, size, size, device=dev)
        labels = torch.arange(BATCH, device=dev) // 2 % config.num_classes
        pairs = PairInfo(torch.arange(BATCH, device=dev), torch.ones(BATCH, dtype=torch.bool, device=dev))
        teacher = torch.randn(BATCH, 1000, device=dev)

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.float16, enabled=dev == "cuda"):
                outputs = model(x, x, x)
            outputs = {key: value.float() for key, value in outputs.items()}
            outputs["distill_logits"] = head(2 * outputs["photo_codes"] - 1)
            outputs["teacher_logits"] = teacher
            loss = cscan_loss(outputs, labels, weights, pairs=pairs)["total"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if dev == "cuda":
                torch.cuda.synchronize()

        step()  # warm-up: kernels chosen, memory allocated
        start = time.perf_counter()
        for _ in range(count):
            step()
        return (time.perf_counter() - start) / count

    out: dict[str, Any] = {"steps_per_epoch": steps, "batch": BATCH, "image_size": config.image_size}
    cpu = seconds_per_step("cpu", cpu_steps)
    out["cpu_epoch_s"] = round(cpu * steps, 1)
    out["cpu_steps_timed"] = cpu_steps
    if device == "cuda":
        out["gpu_epoch_s"] = round(seconds_per_step("cuda", steps) * steps, 2)
        out["speedup"] = round(out["cpu_epoch_s"] / out["gpu_epoch_s"], 1)
    return out


def check_device(allow_cpu: bool) -> str:
    """``cuda`` when PyTorch and FAISS both see a GPU; raises NoGPU otherwise (``cpu`` if allowed)."""
    import faiss
    import torch

    reasons = []
    if not torch.cuda.is_available():
        reasons.append(f"PyTorch {torch.__version__} sees no CUDA device")
    if not hasattr(faiss, "GpuIndexBinaryFlat") or faiss.get_num_gpus() == 0:
        reasons.append(f"FAISS {faiss.__version__} has no GPU support or sees no GPU (install faiss-gpu)")
    if not reasons:
        return "cuda"
    if allow_cpu:
        return "cpu"
    raise NoGPU("; ".join(reasons))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--allow-cpu", action="store_true", help="run the CPU side alone (tests)")
    parser.add_argument("--small", action="store_true", help="tiny sizes (tests)")
    args = parser.parse_args(argv)
    try:
        device = check_device(args.allow_cpu)
    except NoGPU as exc:
        print(f"gpu_check: no GPU to check here: {exc}", file=sys.stderr)
        return 2
    import torch

    sizes = [20_000] if args.small else [1_000_000, 10_000_000]
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (no GPU: CPU side only)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "checkpoint": CHECKPOINT.name,
        "encoding": encoding(device, 16 if args.small else 4096),
        "search": search(device, sizes, 100, 10 if args.small else 100),
        "training": training(device, 2 if args.small else EPOCH_STEPS, 1 if args.small else 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
