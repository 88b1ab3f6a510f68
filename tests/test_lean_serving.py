"""Serving without PyTorch (the CPU Docker image): ONNX graphs exported beforehand give the codes,
class guesses and attention masks of the PyTorch network, and the service, the reindex worker and the
indexer run in processes where ``import torch`` fails, saying clearly what needs PyTorch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.common import free_port, training_only_modules
from model.checkpoint import Checkpoint, file_checksum, load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.encoding import ImageEncoder
from model.factory import build_model, load_encoder
from model.onnx_encoder import TorchRequired, load_onnx_encoder
from model.onnx_export import export_graphs
from model.onnx_runtime import graph_path
from tests.helpers import (
    AUTH,
    CHECKPOINT,
    REPO,
    TOKEN,
    job_finished,
    make_client,
    photos_of,
    wait_until,
    wait_until_serving,
)

# What the CPU image lacks, simulated: these imports fail in the child process as they do in the image.
NO_TORCH = f"import sys; sys.modules.update(dict.fromkeys({training_only_modules()!r}, None)); "
TORCH_MODULES = (
    "[m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in ('torch', 'torchvision')]"
)


@pytest.fixture(scope="module")
def exported(shared_onnx_cache: None) -> Path:
    """The committed checkpoint's graphs, both branches and the attention masks, as `make onnx` ships them
    (in the session's ONNX cache: the branches other tests exported are reused, and the other way round)."""
    folder = Path(os.environ["SKETCH_ONNX_CACHE_DIR"])
    model = build_model(load_checkpoint(CHECKPOINT)).eval()
    export_graphs(model, file_checksum(CHECKPOINT), folder, masks=True)
    return folder


def real_inputs(sketchy: Path) -> tuple[list[Image.Image], list[Image.Image]]:
    root = sketchy / "sketch" / "tx_000000000000"
    sketches = [Image.open(p).copy() for c in ("cat", "teapot") for p in sorted((root / c).glob("*.png"))[:4]]
    photo_root = sketchy / "photo" / "tx_000000000000"
    photos = [
        Image.open(p).convert("RGB")
        for c in ("cat", "teapot")
        for p in sorted((photo_root / c).glob("*.jpg"))[:3]
    ]
    return sketches, photos


def test_the_lean_encoder_gives_the_codes_guesses_and_masks_of_pytorch(exported: Path, sketchy: Path) -> None:
    lean = load_onnx_encoder(CHECKPOINT, "auto", "auto", exported, threads=2)
    reference = load_encoder(CHECKPOINT, "cpu", backend="torch")
    assert isinstance(lean, ImageEncoder) and lean.backend == "onnxruntime (no PyTorch)"
    assert lean.checksum == reference.checksum == file_checksum(CHECKPOINT)  # caches and manifests agree
    assert lean.class_names == reference.class_names and lean.edges is not None
    sketches, photos = real_inputs(sketchy)
    a, b = lean.encode_sketches(sketches), reference.encode_sketches(sketches)
    np.testing.assert_array_equal(a.packed, b.packed)
    np.testing.assert_allclose(a.continuous, b.continuous, atol=1e-4)
    p, q = lean.encode_photos(photos), reference.encode_photos(photos)
    np.testing.assert_array_equal(p.packed, q.packed)
    np.testing.assert_allclose(p.continuous, q.continuous, atol=1e-4)
    np.testing.assert_allclose(
        lean.sketch_class_probabilities(a.continuous),
        reference.sketch_class_probabilities(b.continuous),
        atol=1e-4,
    )
    # the NumPy preprocessing is the tensor preprocessing, value for value
    np.testing.assert_array_equal(lean.prepare_sketches(sketches), reference.prepare_sketches(sketches))
    prepared = lean.prepare_sketches(sketches[:2])
    lean_masks, torch_masks = lean.sketch_attention(prepared), reference.sketch_attention(prepared)
    assert lean_masks is not None and torch_masks is not None and lean_masks.shape == torch_masks.shape
    np.testing.assert_allclose(lean_masks, torch_masks, atol=1e-4)
    edges = lean.edge_maps(photos[:2])
    found, expected = lean.photo_attention(photos[:2], edges), reference.photo_attention(photos[:2], edges)
    assert found is not None and expected is not None
    np.testing.assert_allclose(found[0], expected[0], atol=1e-4)
    assert found[1] == expected[1]


def test_what_needs_pytorch_is_refused_at_load_with_what_to_do(
    tmp_path: Path, exported: Path, tiny_checkpoint: Path
) -> None:
    with pytest.raises(TorchRequired, match="export-onnx --checkpoint"):
        load_onnx_encoder(CHECKPOINT, cache_dir=tmp_path / "empty")
    with pytest.raises(TorchRequired, match="GPU image"):
        load_onnx_encoder(CHECKPOINT, "cuda", cache_dir=exported)
    with pytest.raises(TorchRequired, match="SKETCH_ENCODER_BACKEND=torch"):
        load_onnx_encoder(CHECKPOINT, backend="torch", cache_dir=exported)
    hed = tmp_path / "hed.safetensors"
    ckpt = load_checkpoint(tiny_checkpoint)
    save_checkpoint(
        hed, Checkpoint(ModelConfig(**{**ckpt.config.to_dict(), "edge_detector": "hed"}), ckpt.state_dict)
    )
    export_graphs(build_model(load_checkpoint(hed)).eval(), file_checksum(hed), tmp_path / "g", masks=True)
    with pytest.raises(TorchRequired, match="edge maps with HED, a network that runs on PyTorch"):
        load_onnx_encoder(hed, cache_dir=tmp_path / "g")
    # graphs of the branches only (what the service's own cache holds): explain's masks are missing
    only_branches = tmp_path / "branches"
    export_graphs(build_model(ckpt).eval(), file_checksum(tiny_checkpoint), only_branches)
    with pytest.raises(TorchRequired, match="sketch-mask, photo-mask missing"):
        load_onnx_encoder(tiny_checkpoint, cache_dir=only_branches)


def test_export_onnx_writes_checked_graphs_and_prunes_other_checkpoints(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    folder = tmp_path / "graphs"
    folder.mkdir()
    stale = graph_path(folder, "0" * 64, "sketch")
    stale.write_bytes(b"an older checkpoint's graph")
    exe = Path(sys.executable).parent / "indexer"
    result = subprocess.run(
        [str(exe), "export-onnx", "--checkpoint", str(tiny_checkpoint), "--out", str(folder), "--prune"],
        capture_output=True,
        text=True,
        env={**os.environ, "SKETCH_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.returncode == 0, result.stderr
    checksum = file_checksum(tiny_checkpoint)
    names = ("sketch", "photo", "sketch-mask", "photo-mask")
    assert sorted(folder.glob("*.onnx")) == sorted(graph_path(folder, checksum, n) for n in names)
    assert "4 graphs" in result.stdout and "checked" in result.stdout and not stale.exists()
    # readable by the serving image's non-root user (atomic writes create owner-only files)
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in folder.glob("*.onnx"))


def test_export_onnx_checks_a_checkpoint_with_a_learned_edge_detector(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """HED and PiDiNet edge maps run on PyTorch: the export checked its graphs with the PyTorch-free
    encoder, which refuses such checkpoints, so exporting one failed with a traceback."""
    hed = tmp_path / "hed.safetensors"
    ckpt = load_checkpoint(tiny_checkpoint)
    save_checkpoint(
        hed, Checkpoint(ModelConfig(**{**ckpt.config.to_dict(), "edge_detector": "hed"}), ckpt.state_dict)
    )
    folder = tmp_path / "graphs"
    exe = Path(sys.executable).parent / "indexer"
    result = subprocess.run(
        [str(exe), "export-onnx", "--checkpoint", str(hed), "--out", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "SKETCH_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.returncode == 0, result.stderr
    assert "4 graphs" in result.stdout and "checked" in result.stdout
    names = ("sketch", "photo", "sketch-mask", "photo-mask")
    assert sorted(folder.glob("*.onnx")) == sorted(graph_path(folder, file_checksum(hed), n) for n in names)


def run_without_torch(code: str, env: dict[str, str], **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def, type-arg]
    return subprocess.Popen([sys.executable, "-c", NO_TORCH + code], env=env, cwd=REPO, **kwargs)


def lean_env(tmp_path: Path, exported: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SKETCH_DATA_DIR": str(tmp_path / "data"),
        "SKETCH_CHECKPOINT": str(CHECKPOINT),
        "SKETCH_ONNX_CACHE_DIR": str(exported),
        "SKETCH_ADMIN_TOKEN": TOKEN,
        "SKETCH_INDEX_POLL_SECONDS": "0.3",
        "OMP_NUM_THREADS": "1",
    }


def test_the_service_and_its_worker_run_without_pytorch(
    tmp_path: Path, exported: Path, sketchy: Path
) -> None:
    gallery = tmp_path / "gallery"
    photos_of(sketchy, ("cat", "teapot", "airplane"), gallery, per_class=6)
    sketch = sorted((sketchy / "sketch" / "tx_000000000000" / "cat").glob("*.png"))[0].read_bytes()
    port = free_port()
    env = lean_env(tmp_path, exported)
    log = tmp_path / "server.log"
    server = run_without_torch(
        "import uvicorn\ntry:\n"
        # as the image runs it: one-write answers, the app's own access log only
        f"    uvicorn.run('app.asgi:app', host='127.0.0.1', port={port}, access_log=False,\n"
        "                http='app.http_protocol:OneWriteHttpTools')\n"
        f"finally:\n    print('torch modules loaded:', {TORCH_MODULES})\n",
        env,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, "/healthz", log=log)
        r = httpx.post(
            f"{base}/admin/galleries", json={"name": "g", "source_dir": str(gallery)}, headers=AUTH
        )
        assert r.status_code == 201, r.text
        job_id = httpx.post(f"{base}/admin/galleries/g/reindex", headers=AUTH).json()["job_id"]
        job = wait_until(
            lambda: httpx.get(f"{base}/admin/jobs/{job_id}", headers=AUTH).json(),
            f"job {job_id} to finish",
            every=0.3,
            until=job_finished,
        )
        assert job["state"] == "succeeded" and job["total"] == 18, job
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, "the index to load", every=0.3)
        files = {"file": ("cat.png", sketch, "image/png")}
        lean = httpx.post(f"{base}/search?k=6&gallery=g", files=files).json()
        explained = httpx.post(f"{base}/search?k=6&gallery=g&explain=1", files=files, timeout=60).json()
    finally:
        server.send_signal(signal.SIGINT)  # uvicorn re-raises it after shutting down: the finally prints
        out, _ = server.communicate(timeout=60)
    assert "onnxruntime (no PyTorch)" in log.read_text()
    assert "torch modules loaded: []" in out.splitlines()  # the server ran to its end without torch
    assert [m["label"] for m in lean["results"]].count("cat") >= 4, lean
    assert lean["guesses"][0]["label"] == "cat"
    assert explained["explanation"]["png"].startswith("data:image/png;base64,")
    assert all(m["attention"] is not None for m in explained["results"])
    # the same search through PyTorch, on the index the lean worker built: the same photos, same distances
    with make_client(tmp_path, CHECKPOINT, encoder_backend="torch", embedded_worker=False) as client:
        reference = client.post("/search?k=6&gallery=g", files=files).json()
    assert [(m["image_id"], m["distance"]) for m in lean["results"]] == [
        (m["image_id"], m["distance"]) for m in reference["results"]
    ]
    assert lean["guesses"] == reference["guesses"]


def test_without_pytorch_the_server_stops_at_start_up_saying_what_to_run(tmp_path: Path) -> None:
    env = {**lean_env(tmp_path, tmp_path / "no-graphs"), "SKETCH_EMBEDDED_WORKER": "false"}
    server = run_without_torch(
        f"import uvicorn; uvicorn.run('app.asgi:app', host='127.0.0.1', port={free_port()})",
        env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = server.communicate(timeout=120)
    assert server.returncode != 0
    # the last words before uvicorn's "startup failed": what is missing and the command that makes it
    assert "cannot load the model: the ONNX graphs of checkpoint cscan-sketchy-64" in out
    assert "indexer export-onnx --checkpoint" in out


def test_the_indexer_without_pytorch_builds_and_refuses_training_clearly(
    tmp_path: Path, exported: Path, sketchy: Path
) -> None:
    env = lean_env(tmp_path, exported)
    gallery = tmp_path / "gallery"
    photos_of(sketchy, ("cat",), gallery, per_class=4)

    def indexer(*args: str) -> subprocess.CompletedProcess[str]:
        proc = run_without_torch(
            f"sys.argv = ['indexer', *{list(args)!r}]; from indexer.cli import main; main()",
            env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    assert indexer("migrate").returncode == 0
    built = indexer("build", "--gallery", "g", "--source", str(gallery))
    assert built.returncode == 0, built.stderr
    assert "version 1 active with 4 images (4 encoded" in built.stdout
    for command in ("train", "evaluate", "export-onnx"):
        refused = indexer(command, "--epochs", "1")
        assert refused.returncode == 2
        assert f"'indexer {command}' needs PyTorch" in refused.stderr and "Traceback" not in refused.stderr


def test_onnx_runtime_records_no_telemetry(tmp_path: Path, exported: Path) -> None:
    """ONNX Runtime 1.32 writes a device id and a telemetry database under ~/.cache (and /tmp/.ses)
    unless ORT_DISABLE_TELEMETRY is set before it is imported; model.onnx_runtime sets it."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    code = (
        "from model.onnx_runtime import OnnxBranches; from tests.helpers import CHECKPOINT; "
        "from model.checkpoint import file_checksum; "
        f"OnnxBranches(__import__('pathlib').Path({str(exported)!r}), file_checksum(CHECKPOINT), True, 1)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")},
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert not (home / ".cache" / "Microsoft").exists()
