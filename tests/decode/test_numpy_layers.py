"""The NumPy decoder's own arithmetic against straightforward references: GELU without
scipy's erf, layer norm through products, attention with its products reordered, and the
banded bilinear resize of a mask."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from tilesam.decode.numpy_attention import NumpyAttention
from tilesam.decode.numpy_layers import gelu, layer_norm
from tilesam.decode.upsample import _axis_weights, _resized_above


def test_gelu_is_the_exact_gelu_to_float32_precision():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.normal(0, 3, 200_000), np.linspace(-12, 12, 5001), [0.0, -0.0, 40.0, -40.0]]
    ).astype(np.float32)
    exact = x.astype(np.float64) * (1 + erf(x.astype(np.float64) / np.sqrt(2))) / 2
    ours = gelu(x.copy())
    assert ours.dtype == np.float32
    # Phi(x) within 2.5e-7 (scipy's float32 erf: 1.1e-7), i.e. a few float32 steps.
    assert np.abs(ours - exact).max() <= 2.5e-7 * max(1.0, np.abs(x).max())
    assert (np.abs(ours - exact) <= 2.5e-7 * np.maximum(np.abs(x), 1e-3)).all()


def test_gelu_works_in_place_on_any_shape_and_block_boundary():
    x = np.random.default_rng(1).normal(size=(3, 70_001)).astype(np.float32)
    expected = gelu(x.reshape(-1).copy()).reshape(x.shape)
    out = gelu(x)
    assert out is x
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("shape", [(7, 256), (4096, 256), (1000, 64)])
def test_layer_norm_equals_the_textbook_formula(shape):
    rng = np.random.default_rng(2)
    x = rng.normal(1, 3, shape).astype(np.float32)
    w, b = rng.normal(size=(2, shape[1])).astype(np.float32)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    reference = (x - mean) / np.sqrt(var + 1e-5) * w + b
    np.testing.assert_allclose(layer_norm(x, w, b, 1e-5), reference, atol=2e-5)


def _attention(heads=8, width=32, inner=16, seed=3) -> NumpyAttention:
    rng = np.random.default_rng(seed)
    shapes = {"q_proj": (inner, width), "k_proj": (inner, width), "v_proj": (inner, width)}
    shapes["out_proj"] = (width, inner)
    weights = {}
    for name, shape in shapes.items():
        weights[f"a.{name}.weight"] = rng.normal(0, 0.3, shape).astype(np.float32)
        weights[f"a.{name}.bias"] = rng.normal(0, 0.3, shape[0]).astype(np.float32)
    return NumpyAttention(weights, "a", heads=heads)


@pytest.mark.parametrize("prompt_tokens", [2, 7, 40])  # 40: too many to fold
def test_reordered_attention_equals_plain_attention(prompt_tokens):
    att = _attention(heads=4)
    rng = np.random.default_rng(4)
    image = rng.normal(size=(300, 32)).astype(np.float32)
    pe = rng.normal(size=(300, 32)).astype(np.float32)
    prompt = rng.normal(size=(prompt_tokens, 32)).astype(np.float32)
    k = image + pe
    plain_to_image = att(prompt, k, image)
    np.testing.assert_allclose(att.tokens_to_image(prompt, k, image), plain_to_image, atol=1e-4)
    projected = att.tokens_to_image(prompt, None, image, att.project_keys_values(k, image))
    np.testing.assert_allclose(projected, plain_to_image, atol=1e-4)
    plain_to_tokens = image + att(k, prompt, prompt)
    folded = att.image_to_tokens(k, prompt, prompt, residual=image)
    np.testing.assert_allclose(folded, plain_to_tokens, atol=1e-4)
    queries = att.project_queries(k)
    given = att.image_to_tokens(None, prompt, prompt, queries=queries, residual=image)
    np.testing.assert_allclose(given, plain_to_tokens, atol=1e-4)


@pytest.mark.parametrize("original", [(1024, 1024), (1088, 744), (300, 300)])
def test_the_banded_resize_gives_the_whole_products_bits(original):
    rng = np.random.default_rng(5)
    wy = _axis_weights(256, 1024, original[0])
    wx = _axis_weights(256, 1024 * original[1] // max(original), original[1])
    cells = rng.normal(size=(256, 256)).astype(np.float32)
    whole = wy @ cells @ wx.T
    for threshold in (0.0, float(np.median(whole))):
        np.testing.assert_array_equal(_resized_above(wy, cells, wx, threshold), whole > threshold)
