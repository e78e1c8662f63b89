"""The decoder's inference shortcuts compute the same function as its plain path.

The official fixtures prove the whole model against the official code; these tests pin each
shortcut (reordered cross-attention, image tokens prepared once per embedding) against the
plain multi-head attention of the same weights, on shapes the fixtures do not reach.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.prompt import Prompt
from tilesam.decode.sam_prompt import to_sam_prompt
from tilesam.models.sam_model import PREPARE_AT_USE
from tilesam.models.transformer import Attention, ImageTokens

TOL = 1e-4


@pytest.fixture
def attention() -> Attention:
    torch.manual_seed(3)
    layer = Attention(64, num_heads=8, downsample_rate=2)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.2)  # non-zero biases, so that dropping one would show
    return layer


@pytest.mark.parametrize("prompt_tokens", [3, 7, 20])
@pytest.mark.parametrize("batch", [1, 3])
def test_tokens_to_image_equals_plain_attention(attention, prompt_tokens, batch):
    tokens = torch.randn(batch, prompt_tokens, 64)
    keys, values = torch.randn(batch, 300, 64), torch.randn(batch, 300, 64)
    plain = attention(tokens, keys, values)
    with torch.inference_mode():
        fast = attention.tokens_to_image(tokens, keys, values)
        kv = attention.project_keys_values(keys, values)
        cached = attention.tokens_to_image(tokens, None, values, kv_heads=kv)
    torch.testing.assert_close(fast, plain, atol=TOL, rtol=0)
    torch.testing.assert_close(cached, plain, atol=TOL, rtol=0)


@pytest.mark.parametrize("prompt_tokens", [3, 7, 20])
@pytest.mark.parametrize("batch", [1, 3])
def test_image_to_tokens_equals_plain_attention(attention, prompt_tokens, batch):
    image = torch.randn(batch, 300, 64)
    keys, values = torch.randn(batch, prompt_tokens, 64), torch.randn(batch, prompt_tokens, 64)
    plain = attention(image, keys, values)
    with torch.inference_mode():
        fast = attention.image_to_tokens(image, keys, values)
        q_heads = attention.project_queries(image)
        cached = attention.image_to_tokens(None, keys, values, q_heads=q_heads)
    torch.testing.assert_close(fast, plain, atol=TOL, rtol=0)
    torch.testing.assert_close(cached, plain, atol=TOL, rtol=0)


def test_prepared_image_tokens_decode_like_features(model):
    torch.manual_seed(4)
    features = torch.randn(1, 128, 16, 16)
    points = (torch.tensor([[[40.0, 60.0], [100.0, 30.0]]]), torch.tensor([[1, 0]]))
    box = torch.tensor([[20.0, 30.0, 120.0, 140.0]])
    with torch.inference_mode():
        tokens = model.sam.image_tokens(features)
        for prompt in ({"points": points}, {"boxes": box}, {"points": points, "boxes": box}):
            plain = model.sam.decode(features, **prompt)
            fast = model.sam.decode(tokens, **prompt)
            for a, b in zip(plain, fast):
                torch.testing.assert_close(b, a, atol=TOL, rtol=0)
        with pytest.raises(ValueError, match="mask"):
            model.sam.decode(tokens, points=points, mask_input=torch.zeros(1, 1, 64, 64))


@pytest.mark.parametrize("graphs", [True, False], ids=["graphs", "eager"])
def test_tokens_are_prepared_at_the_use_where_it_pays(random_tiny, graphs):
    """Against the traced graphs preparing pays from PREPARE_AT_USE on; decoding eagerly
    (SAM 2.1, a model in training), from the second use."""
    model = random_tiny(0, decoder_graphs=graphs)
    embedding = model.embed(np.random.default_rng(6).integers(0, 255, (200, 180), np.uint8))
    at_use = PREPARE_AT_USE if graphs else 2
    for _ in range(at_use - 1):
        model.predict(embedding, points=[(50, 60)], labels=[1])
        assert model._reuse.kept(embedding.features) is None  # nothing kept: not prepared
    model.predict(embedding, points=[(50, 60)], labels=[1])
    assert isinstance(model._reuse.kept(embedding.features), ImageTokens)


def test_predict_reuses_tokens_only_for_the_same_embedding(model):
    rng = np.random.default_rng(5)
    first = model.embed(rng.integers(0, 255, (200, 180), dtype=np.uint8))
    # The features as they are until their PREPARE_AT_USE-th decode, then tokens prepared
    # once and kept.
    uses = [model.predict(first, points=[(50, 60)], labels=[1]) for _ in range(PREPARE_AT_USE)]
    assert PREPARE_AT_USE > 2
    assert isinstance(model._reuse.kept(first.features), ImageTokens)
    again = model.predict(first, points=[(50, 60)], labels=[1])
    np.testing.assert_allclose(uses[0].low_res_logits, uses[-1].low_res_logits, atol=TOL)
    np.testing.assert_array_equal(uses[-1].low_res_logits, again.low_res_logits)

    del first, uses, again
    gc.collect()  # a new embedding may now reuse the old one's memory address
    second = model.embed(rng.integers(0, 255, (200, 180), dtype=np.uint8))
    # With gradients on, decode takes the plain path: the reference.
    fresh = model.sam.decode(
        second.features,
        points=model._torch_prompt(to_sam_prompt(Prompt.make([(50, 60)], [1]), second))["points"],
    )
    cached = model.predict(second, points=[(50, 60)], labels=[1])
    np.testing.assert_allclose(cached.low_res_logits, fresh[0][0].detach().numpy(), atol=TOL)

    # A mask input changes the dense prompt: the features, not the cached tokens, are used.
    refined = model.predict(second, points=[(50, 60)], mask_input=cached.low_res_logits[0])
    plain = model.sam.decode(
        second.features,
        points=model._torch_prompt(to_sam_prompt(Prompt.make([(50, 60)]), second))["points"],
        mask_input=torch.from_numpy(cached.low_res_logits[0][None, None]),
    )
    np.testing.assert_allclose(refined.low_res_logits, plain[0][0].detach().numpy(), atol=TOL)
    assert isinstance(second, ImageEmbedding)
