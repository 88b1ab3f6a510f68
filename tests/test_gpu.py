"""The CUDA paths (run by scripts/gpu_check.sh on an NVIDIA machine; skipped here without a GPU), and
the GPU check itself on a CPU: it refuses clearly, and its JSON has every field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import CHECKPOINT, REPO

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.cuda
@needs_cuda
def test_the_gpu_index_finds_what_the_cpu_index_finds() -> None:
    import faiss

    from catalog.index_device import GpuPlacer
    from catalog.index_store import IndexSpec, build_index

    codes = np.random.default_rng(0).integers(0, 256, (100_000, 8), dtype=np.uint8)
    cpu = build_index(codes, 64, IndexSpec("BFlat"))
    gpu = GpuPlacer()(cpu)
    assert gpu is not cpu and "Gpu" in type(faiss.downcast_IndexBinary(gpu)).__name__
    queries = codes[:20]
    np.testing.assert_array_equal(
        np.sort(gpu.search(queries, 50)[0], 1), np.sort(cpu.search(queries, 50)[0], 1)
    )


@pytest.mark.cuda
@needs_cuda
def test_cuda_encoding_in_fp16_gives_the_cpu_bits() -> None:
    from PIL import Image

    from model.factory import load_encoder

    rng = np.random.default_rng(0)
    photos = [Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)) for _ in range(32)]
    cpu = load_encoder(CHECKPOINT, "cpu", backend="torch").encode_photos(photos)
    gpu = load_encoder(CHECKPOINT, "cuda").encode_photos(photos)
    same = np.unpackbits(cpu.packed) == np.unpackbits(gpu.packed)
    assert same.mean() >= 0.99  # fp16 flips only the bits that sit on the threshold


@pytest.mark.cuda
@needs_cuda
def test_a_training_step_on_cuda_with_the_gradient_scaler() -> None:
    rc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", "/dev/null", "--small"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rc.returncode == 0, rc.stderr


def test_gpu_check_script_refuses_clearly_without_a_gpu(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc = subprocess.run(
        ["bash", "scripts/gpu_check.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)},
        timeout=60,
    )
    assert rc.returncode == 2 and "no NVIDIA GPU here" in rc.stderr
    assert not (tmp_path / "gpu_check.json").exists()


@pytest.mark.slow
def test_gpu_check_writes_every_field_and_says_when_it_had_no_gpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), "--small"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if not torch.cuda.is_available():
        assert refused.returncode == 2 and "sees no CUDA device" in refused.stderr
    rc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), "--small", "--allow-cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rc.returncode == 0, rc.stderr
    result = json.loads(out.read_text())
    assert {"device", "torch", "encoding", "search", "training"} <= set(result)
    assert result["encoding"]["cpu_photos_per_s"] > 0
    assert result["search"][0]["codes"] == 20_000 and result["search"][0]["cpu_one_query_ms"] > 0
    assert result["training"]["cpu_epoch_s"] > 0 and result["training"]["steps_per_epoch"] == 2
    if not torch.cuda.is_available():
        assert result["device"].startswith("cpu") and "gpu_epoch_s" not in result["training"]
