"""Choosing where the index is searched (and the network runs), tested on a CPU-only machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from catalog.index_device import (
    GpuPlacer,
    IndexDevice,
    IndexDeviceError,
    choose_index_device,
    faiss_gpus,
    placer_for,
)
from catalog.index_store import IndexSpec, IndexType, build_index
from model.factory import resolve_device


def test_cpu_is_chosen_when_asked_or_when_faiss_has_no_gpu() -> None:
    assert choose_index_device("cpu", gpus=4).device == IndexDevice.CPU
    auto = choose_index_device("auto", gpus=0)
    assert auto.device == IndexDevice.CPU and "GPU" in auto.reason
    assert placer_for(auto) is None


def test_a_visible_gpu_is_used_by_auto_and_by_cuda() -> None:
    for requested in ("auto", "cuda"):
        choice = choose_index_device(requested, gpus=2)
        assert choice.device == IndexDevice.CUDA and "2 GPU" in choice.reason
        assert isinstance(placer_for(choice), GpuPlacer)


def test_cuda_without_a_gpu_is_refused_with_the_reason() -> None:
    with pytest.raises(IndexDeviceError, match="SKETCH_INDEX_DEVICE=cuda but"):
        choose_index_device("cuda", gpus=0)
    with pytest.raises(ValueError):
        choose_index_device("tpu")


def test_this_machines_faiss_reports_what_it_can_do() -> None:
    # faiss-cpu here: no GPU classes, so auto picks the CPU and says why
    if not hasattr(faiss, "GpuIndexBinaryFlat"):
        assert faiss_gpus() == 0
        assert "no GPU support" in choose_index_device("auto").reason


def test_approximate_indexes_stay_on_the_cpu() -> None:
    codes = np.random.default_rng(0).integers(0, 256, (500, 8), dtype=np.uint8)
    ivf = build_index(codes, 64, IndexSpec.for_type(IndexType.IVF, 500))
    assert GpuPlacer()(ivf) is ivf  # no GPU version of IVF: searched where it is


def test_network_device_cuda_without_cuda_is_refused() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")


def test_server_refuses_to_start_with_index_device_cuda_on_a_cpu_machine(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    if faiss_gpus():
        pytest.skip("FAISS sees a GPU here")
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(tmp_path),
        "SKETCH_CHECKPOINT": str(tiny_checkpoint),
        "SKETCH_INDEX_DEVICE": "cuda",
    }
    server = Path(sys.executable).parent / "sketch-server"
    proc = subprocess.run([str(server), "--port", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "SKETCH_INDEX_DEVICE=cuda but" in proc.stderr


def test_a_network_device_that_is_not_there_names_its_setting(tmp_path) -> None:
    import torch

    from catalog.encoders import encoder_for
    from catalog.settings import load_settings
    from model.factory import DeviceUnavailable, resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceUnavailable, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(RuntimeError, match=r"^SKETCH_DEVICE=cuda: .*no CUDA device"):
        encoder_for(load_settings(data_dir=tmp_path, device="cuda"))
