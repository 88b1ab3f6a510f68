"""Checkpoints round-trip through safetensors, and bad files are refused with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from model.config import ModelConfig
from model.cscan import CSCAN
from model.factory import build_model, load_encoder
from model.hashing import binarise, pack_bits


def small_checkpoint(**kw: object) -> Checkpoint:
    torch.manual_seed(0)
    config = ModelConfig(
        image_size=64, num_classes=3, class_names=["a", "b", "c"], edge_detector="canny", **kw
    )  # type: ignore[arg-type]
    return Checkpoint(config, CSCAN(config, pretrained=False).state_dict(), {"metrics": {"mAP": 0.5}})


def test_round_trip_gives_the_same_codes(tmp_path: Path) -> None:
    ckpt = small_checkpoint()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, ckpt, half=False)
    loaded = load_checkpoint(path)
    assert loaded.config == ckpt.config and loaded.info == ckpt.info
    original, rebuilt = build_model(ckpt).eval(), build_model(loaded).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(original.encode_sketch(x), rebuilt.encode_sketch(x))
        assert torch.allclose(original.encode_photo(x, x), rebuilt.encode_photo(x, x))


def test_fp16_storage_keeps_binary_codes(tmp_path: Path) -> None:
    ckpt = small_checkpoint()
    path = tmp_path / "m16.safetensors"
    save_checkpoint(path, ckpt, half=True)
    a, b = build_model(ckpt).eval(), build_model(load_checkpoint(path)).eval()
    x = torch.randn(16, 3, 64, 64)
    with torch.no_grad():
        ca, cb = a.encode_sketch(x), b.encode_sketch(x)
    assert (ca - cb).abs().max() < 1e-2
    near_threshold = (ca - 0.5).abs() < 1e-2
    assert torch.equal((ca >= 0.5)[~near_threshold], (cb >= 0.5)[~near_threshold])


def test_encoder_from_file_packs_codes(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, small_checkpoint())
    encoder = load_encoder(path, device="cpu")
    sketch = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(sketch).ellipse((10, 10, 100, 90), outline=0, width=3)
    codes = encoder.encode_sketches([sketch])
    assert codes.packed.shape == (1, 8) and codes.packed.dtype.name == "uint8"
    assert codes.continuous.shape == (1, 64) and ((codes.continuous > 0) & (codes.continuous < 1)).all()
    np.testing.assert_array_equal(codes.packed, pack_bits(binarise(codes.continuous)))
    photo = Image.new("RGB", (90, 60), (200, 10, 10))
    assert encoder.encode_photos([photo]).packed.shape == (1, 8)
    assert len(encoder.checksum) == 64


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, small_checkpoint())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a CSCAN checkpoint"):
        load_checkpoint(foreign)


def test_mismatched_weights_are_refused(tmp_path: Path) -> None:
    ckpt = small_checkpoint()
    wrong = Checkpoint(
        ModelConfig(image_size=64, num_classes=3, bits=32, edge_detector="canny"), ckpt.state_dict
    )
    with pytest.raises((CheckpointError, RuntimeError)):
        build_model(wrong)


def test_onnx_runtime_and_pytorch_give_the_same_codes(tmp_path: Path, sketchy: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, small_checkpoint())
    torch_encoder = load_encoder(path, "cpu", backend="torch")
    onnx_encoder = load_encoder(path, "cpu", backend="onnx", cache_dir=tmp_path / "onnx")
    assert torch_encoder.runtime is None and onnx_encoder.backend == "onnxruntime"
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2  # cached by checksum for the next start
    sketches = [
        Image.open(p).copy()
        for p in sorted((sketchy / "sketch" / "tx_000000000000" / "cat").glob("*.png"))[:6]
    ]
    photos = [
        Image.open(p).convert("RGB")
        for p in sorted((sketchy / "photo" / "tx_000000000000" / "cat").glob("*.jpg"))[:4]
    ]
    a, b = torch_encoder.encode_sketches(sketches), onnx_encoder.encode_sketches(sketches)
    np.testing.assert_allclose(a.continuous, b.continuous, atol=1e-4)
    np.testing.assert_array_equal(a.packed, b.packed)
    p, q = torch_encoder.encode_photos(photos), onnx_encoder.encode_photos(photos)
    np.testing.assert_allclose(p.continuous, q.continuous, atol=1e-4)
    reloaded = load_encoder(path, "cpu", backend="onnx", cache_dir=tmp_path / "onnx")
    np.testing.assert_array_equal(reloaded.encode_sketches(sketches).packed, a.packed)


def test_checkpoints_record_the_installed_package_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    from model.checkpoint import read_metadata

    config = ModelConfig(image_size=64, num_classes=2, class_names=["a", "b"], edge_detector="canny")
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, Checkpoint(config, CSCAN(config, pretrained=False).state_dict()))
    assert read_metadata(path)["code_version"] == version("sketch-search")
