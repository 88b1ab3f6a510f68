"""The photo branch quantised to int8 (SKETCH_PHOTO_PRECISION=int8): made by `indexer export-onnx
--int8-calibration` from real photos, refused clearly when missing, close to float32's codes, and cached
apart from them in a real build."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog.builder import GalleryBuilder
from catalog.db import migrate
from catalog.db.session import make_engine, make_session_factory
from catalog.encoders import encoder_for
from catalog.index_store import read_version
from catalog.settings import load_settings
from model.checkpoint import file_checksum, load_checkpoint
from model.choices import PhotoPrecision
from model.factory import build_model, load_encoder
from model.hashing import unpack_bits
from model.imageio import decode_photo
from model.onnx_encoder import load_onnx_encoder
from model.onnx_export import export_graphs
from model.onnx_runtime import INT8_WEIGHT_BITS, PHOTO_INT8, Int8GraphMissing, graph_path, session_for
from tests.helpers import CHECKPOINT, photos_of


@pytest.fixture(scope="module")
def int8_folder(shared_onnx_cache: None, sketchy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed checkpoint's graphs with the int8 photo graph, calibrated on 16 real photos of two
    classes (a folder in tmp, never the repository), through the CLI as a user makes it."""
    folder = tmp_path_factory.mktemp("int8-graphs")
    model = build_model(load_checkpoint(CHECKPOINT)).eval()
    export_graphs(model, file_checksum(CHECKPOINT), folder, masks=True)
    calibration = tmp_path_factory.mktemp("calibration")
    photos_of(sketchy, ("cat", "teapot"), calibration, per_class=8)
    exe = Path(sys.executable).parent / "indexer"
    command = [str(exe), "export-onnx", "--checkpoint", str(CHECKPOINT), "--out", str(folder)]
    command += ["--int8-calibration", str(calibration), "--calibration-photos", "16"]
    env = {**os.environ, "SKETCH_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    # calibrated on half of the 16 photos, checked on the other half
    said = re.search(
        r"calibrated on (\d+) photos: ([\d.]+)% of the bits of (\d+) other photos agree", result.stdout
    )
    assert said is not None, result.stdout
    assert (int(said[1]), int(said[3])) == (8, 8) and float(said[2]) >= 95.0
    return folder


def other_photos(sketchy: Path) -> list[Image.Image]:
    """Photos the calibration never saw: later files of its classes and two classes it lacks."""
    root = sketchy / "photo" / "tx_000000000000"
    paths = [p for c in ("cat", "teapot") for p in sorted((root / c).glob("*.jpg"))[8:14]]
    paths += [p for c in ("bicycle", "rabbit") for p in sorted((root / c).glob("*.jpg"))[:6]]
    return [Image.open(p).convert("RGB") for p in paths]


def int8_weights(graph: Path) -> list[np.ndarray]:
    """The graph's int8 initialisers: its quantised weights."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    return [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]


def test_the_int8_graph_is_quantised_and_keeps_the_codes(int8_folder: Path, sketchy: Path) -> None:
    checksum = file_checksum(CHECKPOINT)
    fp32_graph, int8_graph = (
        graph_path(int8_folder, checksum, "photo"),
        graph_path(int8_folder, checksum, PHOTO_INT8),
    )
    # int8 weights: about a quarter of the float32 graph's bytes; readable by the serving image's user
    assert int8_graph.stat().st_size < 0.4 * fp32_graph.stat().st_size
    assert int8_graph.stat().st_mode & 0o777 == 0o644
    fp32 = load_onnx_encoder(CHECKPOINT, "cpu", "onnx", int8_folder, threads=2)
    int8 = load_onnx_encoder(CHECKPOINT, "cpu", "onnx", int8_folder, 2, PhotoPrecision.INT8)
    assert (fp32.photo_precision, int8.photo_precision) == (PhotoPrecision.FP32, PhotoPrecision.INT8)
    photos = other_photos(sketchy)
    a, b = fp32.encode_photos(photos), int8.encode_photos(photos)
    agreement = (unpack_bits(a.packed, 64) == unpack_bits(b.packed, 64)).mean()
    assert agreement >= 0.97, agreement
    # Close on every host. With full 8-bit weights an AVX2 host (no VNNI) saturated its int16 sums:
    # mean difference 0.018 and 1.5% of the values off by more than 0.25 (max 0.67); with 7-bit
    # weights 0.008 and 0.2% (max 0.29), the rounding of 7-bit weights alone.
    difference = np.abs(a.continuous - b.continuous)
    assert difference.mean() < 0.012 and (difference > 0.25).mean() < 0.005, difference.max()
    # 7-bit weights (reduce_range) whatever the host that quantised it: the graph may run on another
    assert max(int(np.abs(w).max()) for w in int8_weights(int8_graph)) <= 64
    # sketches stay float32: the same graph, the same codes
    sketch = Image.open(next((sketchy / "sketch" / "tx_000000000000" / "cat").glob("*.png")))
    assert np.array_equal(
        fp32.encode_sketches([sketch]).continuous, int8.encode_sketches([sketch]).continuous
    )


def test_an_int8_graph_with_8_bit_weights_is_warned_about(
    int8_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnx

    checksum = file_checksum(CHECKPOINT)
    made = graph_path(int8_folder, checksum, PHOTO_INT8)
    # the quantiser records its 7-bit weights, and a graph that says so loads without a word
    assert session_for(made, 1).get_modelmeta().custom_metadata_map[INT8_WEIGHT_BITS] == "7"
    with caplog.at_level(logging.WARNING, logger="model.onnx_runtime"):
        load_onnx_encoder(CHECKPOINT, "cpu", "onnx", int8_folder, 2, PhotoPrecision.INT8)
    assert not caplog.records
    # a graph quantised before that (no record) still serves, with the command that remakes it
    old = tmp_path / "graphs"
    shutil.copytree(int8_folder, old)
    model = onnx.load(str(graph_path(old, checksum, PHOTO_INT8)))
    del model.metadata_props[:]
    onnx.save(model, str(graph_path(old, checksum, PHOTO_INT8)))
    with caplog.at_level(logging.WARNING, logger="model.onnx_runtime"):
        encoder = load_onnx_encoder(CHECKPOINT, "cpu", "onnx", old, 2, PhotoPrecision.INT8)
    assert encoder.photo_precision == PhotoPrecision.INT8
    [record] = caplog.records
    assert "8-bit weights" in record.message and "without VNNI" in record.message
    assert f"indexer export-onnx --out {old} --int8-calibration PHOTO_FOLDER" in record.message
    assert "reindex" in record.message


def test_int8_without_its_graph_says_how_to_make_it(shared_onnx_cache: None, tmp_path: Path) -> None:
    folder = tmp_path / "graphs"
    export_graphs(
        build_model(load_checkpoint(CHECKPOINT)).eval(), file_checksum(CHECKPOINT), folder, masks=True
    )
    with pytest.raises(Int8GraphMissing, match=r"indexer export-onnx .*--int8-calibration"):
        load_onnx_encoder(CHECKPOINT, "cpu", "onnx", folder, 2, PhotoPrecision.INT8)
    with pytest.raises(RuntimeError, match="int8 photo precision runs on ONNX Runtime"):
        load_encoder(CHECKPOINT, "cpu", backend="torch", photo_precision=PhotoPrecision.INT8)


def test_an_int8_build_indexes_its_own_codes_and_caches_them_apart(
    int8_folder: Path, sketchy: Path, tmp_path: Path
) -> None:
    source = tmp_path / "photos"
    photos_of(sketchy, ("bicycle", "rabbit"), source, per_class=6)
    settings = load_settings(
        data_dir=tmp_path / "data", checkpoint=CHECKPOINT, onnx_cache_dir=int8_folder, photo_precision="int8"
    )
    migrate.upgrade(settings.resolved_database_url)
    sessions = make_session_factory(make_engine(settings.resolved_database_url))
    reports, codes = {}, {}
    for precision in (PhotoPrecision.FP32, PhotoPrecision.INT8):  # one data directory, both precisions
        encoder = load_encoder(CHECKPOINT, "cpu", cache_dir=int8_folder, photo_precision=precision)
        builder = GalleryBuilder(
            settings.model_copy(update={"photo_precision": precision}), sessions, encoder
        )
        reports[precision] = builder.build(f"g-{precision}", source)
        index, _ = read_version(reports[precision].version_path)
        codes[precision] = np.stack([index.reconstruct(i) for i in range(index.ntotal)])
        images = [decode_photo(p.read_bytes(), settings.max_pixels) for p in sorted(source.rglob("*.jpg"))]
        assert sorted(map(bytes, codes[precision])) == sorted(
            map(bytes, encoder.encode_photos(images).packed)
        )
    # the int8 build encoded every photo again instead of reusing float32's cached codes
    assert reports[PhotoPrecision.INT8].encoded == 12 and reports[PhotoPrecision.INT8].reused == 0
    checksum = file_checksum(CHECKPOINT)
    folders = {p.name for p in settings.code_cache.glob("*/*") if p.is_dir()}
    digest = file_checksum(graph_path(int8_folder, checksum, PHOTO_INT8))[:8]  # which calibration made them
    assert folders == {checksum[:32], f"{checksum[:32]}-int8-{digest}"}
    # and each version says whose codes it holds
    assert (
        read_version(reports[PhotoPrecision.INT8].version_path)[1].photo_codes
        == f"{checksum[:32]}-int8-{digest}"
    )
    assert read_version(reports[PhotoPrecision.FP32].version_path)[1].photo_codes == checksum[:32]


def test_int8_without_its_graph_stops_the_service_and_the_indexer_saying_what_to_run(
    shared_onnx_cache: None, sketchy: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "graphs"  # float32 graphs only
    export_graphs(
        build_model(load_checkpoint(CHECKPOINT)).eval(), file_checksum(CHECKPOINT), folder, masks=True
    )
    settings = load_settings(
        data_dir=tmp_path / "data", checkpoint=CHECKPOINT, onnx_cache_dir=folder, photo_precision="int8"
    )
    with pytest.raises(RuntimeError, match=r"--int8-calibration PHOTO_FOLDER"):
        encoder_for(settings)
    source = tmp_path / "photos"
    photos_of(sketchy, ("cat",), source, per_class=2)
    env = {
        **os.environ,
        "SKETCH_DATA_DIR": str(tmp_path / "data"),
        "SKETCH_ONNX_CACHE_DIR": str(folder),
        "SKETCH_PHOTO_PRECISION": "int8",
    }
    exe = Path(sys.executable).parent / "indexer"
    for command in (["migrate"], ["build", "--gallery", "g", "--source", str(source)]):
        result = subprocess.run([str(exe), *command], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "--int8-calibration PHOTO_FOLDER" in result.stderr
