"""The CSCAN network: shapes, the attention wiring, options and the backbone weights."""

from __future__ import annotations

import pytest
import torch

from model.backbones import build_backbone
from model.config import ModelConfig
from model.cscan import CSCAN

SIZE = 64


def make(**kw: object) -> CSCAN:
    torch.manual_seed(0)
    return CSCAN(ModelConfig(image_size=SIZE, num_classes=5, **kw), pretrained=False).eval()  # type: ignore[arg-type]


def batch(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE)


@pytest.mark.parametrize("bits", [32, 64, 128])
def test_output_shapes_and_range(bits: int) -> None:
    model = make(bits=bits)
    out = model(batch(), batch(), batch())
    assert out["sketch_codes"].shape == (3, bits) and out["photo_codes"].shape == (3, bits)
    assert out["sketch_logits"].shape == (3, 5) and out["photo_logits"].shape == (3, 5)
    for key in ("sketch_codes", "photo_codes"):
        assert torch.all((out[key] > 0) & (out[key] < 1))


def test_one_mask_shared_by_photo_and_edge() -> None:
    model = make()
    seen: list[torch.Tensor] = []
    model.co_attention.register_forward_hook(lambda _m, inp, out: seen.append(inp[0]) or None)
    masks: list[torch.Tensor] = []
    model.co_attention.register_forward_hook(lambda _m, _i, out: masks.append(out) or None)
    model.encode_photo(batch(2), batch(2))
    assert len(seen) == 1, "co-attention must run once for photo and edge together"
    assert seen[0].shape[1] == 80  # 40 photo channels + 40 edge channels, concatenated
    assert masks[0].shape == (2, 1, SIZE // 8, SIZE // 8)


def test_sketch_attention_changes_features() -> None:
    model = make()
    with torch.no_grad():
        model.sketch_attention.conv.bias.fill_(-20.0)  # mask ~0: the sketch's low-level features vanish
    x = batch(2)
    codes_a = model.encode_sketch(x)
    codes_b = model.encode_sketch(torch.randn_like(x))
    assert torch.allclose(codes_a, codes_b, atol=1e-4)


def test_edge_and_sketch_share_backbone_by_default() -> None:
    shared, separate = make(), make(share_sketch_edge=False)
    assert not hasattr(shared, "edge_low")
    assert sum(p.numel() for p in separate.parameters()) > sum(p.numel() for p in shared.parameters())


def test_variants_for_ablations() -> None:
    photo_only = make(use_edge=False)
    assert photo_only.encode_photo(batch(), None).shape == (3, 64)
    with pytest.raises(ValueError, match="edge map"):
        make().encode_photo(batch(), None)
    no_attention = make(use_attention=False)
    assert no_attention.sketch_attention is None and no_attention.co_attention is None
    assert no_attention(batch(), batch(), batch())["photo_codes"].shape == (3, 64)
    concat = make(fusion="concat")
    assert concat.photo_hash[0].in_features == 2 * 1280
    assert concat(batch(), batch(), batch())["photo_codes"].shape == (3, 64)


def test_bad_config_rejected() -> None:
    with pytest.raises(ValueError, match="bits"):
        ModelConfig(bits=48)
    with pytest.raises(ValueError, match="fusion"):
        ModelConfig(fusion="max")  # type: ignore[arg-type]


def test_pretrained_lite0_weights_load_from_the_installed_package() -> None:
    pretrained = build_backbone("efficientnet_lite0", pretrained=True)
    scratch = build_backbone("efficientnet_lite0", pretrained=False)
    a = pretrained.low.stem.weight
    b = scratch.low.stem.weight
    assert a.shape == b.shape and not torch.allclose(a, b)
    # ImageNet features: a real backbone separates a flat image from a textured one
    with torch.no_grad():
        flat = pretrained.high(pretrained.low(torch.zeros(1, 3, 96, 96)))
        busy = pretrained.high(pretrained.low(torch.randn(1, 3, 96, 96)))
    assert flat.shape == (1, 1280) and not torch.allclose(flat, busy)


def test_lite2_backbone_loads_its_imagenet_weights_and_splits_at_stride_8() -> None:
    lite2 = build_backbone("efficientnet_lite2", pretrained=True)
    scratch = build_backbone("efficientnet_lite2", pretrained=False)
    assert not torch.allclose(lite2.low.stem.weight, scratch.low.stem.weight)
    with torch.no_grad():
        low = lite2.low(torch.randn(1, 3, 128, 128))
        assert low.shape == (1, lite2.low_channels, 16, 16)  # the stride-8 stage, where attention looks
        assert lite2.high(low).shape == (1, lite2.high_channels)
    model = CSCAN(ModelConfig(backbone="efficientnet_lite2", image_size=64, num_classes=3), pretrained=False)
    photo, edge, sketch = (torch.rand(2, 3, 64, 64) for _ in range(3))
    assert model.encode_sketch(sketch).shape == (2, 64)
    assert model.encode_photo(photo, edge).shape == (2, 64)
