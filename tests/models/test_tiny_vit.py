"""TinyViT (MobileSAM image encoder) against the official checkpoint format and outputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tilesam.models.tiny_vit import TinyViT, _relative_bias_index
from tilesam.models.tiny_vit_conv import ConvBN

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
PREFIX = "image_encoder."
SMALL_CONFIG = {
    "embed_dims": (32, 64, 80, 320),
    "depths": (1, 1, 2, 1),
    "num_heads": (1, 2, 5, 10),
    "window_sizes": (7, 7, 14, 7),
}
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def _encoder_entries(state: dict) -> dict:
    """The ``image_encoder.*`` entries of a full-model mapping, prefix removed."""
    return {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}


def _load_small_checkpoint() -> dict[str, torch.Tensor]:
    state = torch.load(FIXTURES / "vit_t_small_fp16.pth", map_location="cpu", weights_only=True)
    # Stored as fp16 to keep the fixture small; the reference ran in fp32.
    return {
        k: v.float() if v.is_floating_point() else v for k, v in _encoder_entries(state).items()
    }


def _reference_input() -> torch.Tensor:
    """Official preprocessing: normalise, then zero-pad bottom/right to 1024 x 1024."""
    image = np.load(FIXTURES / "vit_t_small_reference.npz")["resized_uint8"]
    normalised = (image.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD
    padded = np.zeros((1024, 1024, 3), dtype=np.float32)
    padded[: image.shape[0], : image.shape[1]] = normalised
    return torch.from_numpy(padded).permute(2, 0, 1)[None].contiguous()


def test_state_dict_matches_official_spec() -> None:
    specs = json.loads((FIXTURES / "official_state_dict_specs.json").read_text())
    expected = _encoder_entries(specs["vit_t"])
    actual = {k: list(v.shape) for k, v in TinyViT().state_dict().items()}
    assert actual == expected


def test_small_checkpoint_reproduces_official_embedding() -> None:
    state = _load_small_checkpoint()
    model = TinyViT(**SMALL_CONFIG)
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.inference_mode():
        embedding = model(_reference_input())

    expected = torch.from_numpy(np.load(FIXTURES / "vit_t_small_reference.npz")["embedding"])
    assert embedding.shape == (1, 256, 64, 64)
    assert (embedding[0] - expected).abs().max().item() < 1e-3

    # Saving gives back exactly what was loaded (classifier head included).
    saved = model.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in state)


@pytest.mark.parametrize("window_size", [1, 2, 7, 14])
def test_relative_bias_index_follows_official_numbering(window_size: int) -> None:
    # The fixture's biases are all zero, so check the table directly: each distinct
    # (|dy|, |dx|) offset gets the next free slot the first time a (query, key) scan meets it.
    points = list(itertools.product(range(window_size), repeat=2))
    slots: dict[tuple[int, int], int] = {}
    expected = [
        slots.setdefault((abs(a[0] - b[0]), abs(a[1] - b[1])), len(slots))
        for a in points
        for b in points
    ]
    n = window_size**2
    assert torch.equal(_relative_bias_index(window_size), torch.tensor(expected).view(n, n))


def test_folded_batch_norm_matches_conv_then_batch_norm() -> None:
    # The fixture's running variances are all one; use non-trivial statistics here.
    torch.manual_seed(0)
    layer = ConvBN(8, 8, kernel_size=3, stride=2, groups=8)
    with torch.no_grad():
        layer.bn.weight.uniform_(0.5, 1.5)
        layer.bn.bias.normal_()
        layer.bn.running_mean.normal_()
        layer.bn.running_var.uniform_(0.1, 2.0)
    layer.eval()
    x = torch.randn(2, 8, 15, 15)
    bn = layer.bn
    expected = F.batch_norm(
        layer.c(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps
    )
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_output_stride_is_16_for_other_sizes(training: bool) -> None:
    model = TinyViT(img_size=256, **SMALL_CONFIG).train(training)
    out = model(torch.randn(2, 3, 256, 256))
    assert out.shape == (2, 256, 16, 16)
    assert out.is_contiguous()
