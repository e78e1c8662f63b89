"""SAM's prompt encoder and mask decoder in NumPy: masks from a cache without importing torch.

Importing torch takes 1.3 to 2.3 s on a 2-core machine, longer than everything else a first
click needs (the image, the cache, the decoder: about half a second). A session over a
complete embedding cache needs no encoder, and the decoder is small (0.8 M parameters for
``tiny``, 4 M for SAM's): this module runs it with NumPy alone, on weights that the cache
keeps beside the embeddings (:meth:`tilesam.cache.store.EmbeddingStore.write_decoder`). The
arithmetic is that of :mod:`tilesam.models.prompt_encoder`, :mod:`tilesam.models.transformer`
and :mod:`tilesam.models.mask_decoder` in plain order (float32; the tests hold the two to
1e-4 on real weights), one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tilesam.decode.decoder_config import DecoderConfig
from tilesam.decode.numpy_attention import NumpyAttention
from tilesam.decode.numpy_layers import gelu, layer_norm

__all__ = ["DecoderConfig", "ImageSide", "NumpyDecoder"]

_PE = "prompt_encoder."
_MD = "mask_decoder."


@dataclass(frozen=True)
class ImageSide:
    """The decoder's image side, ready for prompts: ``keys`` (features and the dense prompt)
    and ``key_pe``, token-major ``(h*w, C)``, and ``first``: the first block's projections
    that depend on them alone (token-to-image keys and values, image-to-token queries), or
    None where features are decoded once and the first block reorders its products as the
    others do."""

    keys: np.ndarray
    key_pe: np.ndarray
    first: tuple[np.ndarray, np.ndarray, np.ndarray] | None


class NumpyDecoder:
    """SAM's prompt encoder and mask decoder on NumPy arrays, for one prompt at a time.

    Parameters
    ----------
    weights
        The ``prompt_encoder.*`` and ``mask_decoder.*`` entries of a SAM-layout state dict,
        as arrays.
    config
        The architecture facts the weights do not carry.

    Examples
    --------
    >>> import tilesam
    >>> weights, config = tilesam.load_model().decoder_weights()  # the bundled tiny's
    >>> decoder = NumpyDecoder(weights, config)
    >>> decoder.mask_input_size, decoder.num_mask_tokens
    ((256, 256), 4)
    """

    def __init__(self, weights: Mapping[str, np.ndarray], config: DecoderConfig) -> None:
        self._w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self.config = config
        self.embed_dim = self._w[_PE + "no_mask_embed.weight"].shape[1]
        self.num_mask_tokens = self._w[_MD + "mask_tokens.weight"].shape[0]
        self.depth = _count(self._w, _MD + "transformer.layers.")
        heads, layers = config.num_heads, _MD + "transformer.layers."
        # Per block: self-attention, token-to-image, image-to-token; then the final one.
        self._blocks = [
            tuple(
                NumpyAttention(self._w, f"{layers}{i}.{name}", heads)
                for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
            )
            for i in range(self.depth)
        ]
        self._final = NumpyAttention(self._w, _MD + "transformer.final_attn_token_to_image", heads)
        self._mlp_layers: dict[str, int] = {}
        self._transposed: dict[str, np.ndarray] = {}
        self._pe: np.ndarray | None = None

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """Side of the low-resolution logits a mask prompt must have."""
        return 4 * self.config.grid[0], 4 * self.config.grid[1]

    def dense_pe(self) -> np.ndarray:
        """Positional encoding of the whole embedding grid, ``(C, h, w)``, laid out token by
        token in memory (as :func:`~tilesam.decode.embedding.token_major` lays out features),
        so that the decoder's token-major copy of any window of it reads rows in order."""
        if self._pe is None:
            h, w = self.config.grid
            y = (np.arange(h, dtype=np.float32) + 0.5) / h
            x = (np.arange(w, dtype=np.float32) + 0.5) / w
            grid = np.stack(np.meshgrid(x, y, indexing="xy"), axis=-1)
            self._pe = self._encode(grid).transpose(2, 0, 1)  # (h, w, C) memory
        return self._pe

    # -- prompt encoder ---------------------------------------------------------------------
    def _encode(self, coords: np.ndarray) -> np.ndarray:
        gaussian = self._w[_PE + "pe_layer.positional_encoding_gaussian_matrix"]
        projected = 2 * np.pi * ((2 * coords - 1) @ gaussian)
        return np.concatenate([np.sin(projected), np.cos(projected)], axis=-1)

    def _frame(self, coords: np.ndarray) -> np.ndarray:
        """Encode pixel ``(x, y)`` positions of the model input."""
        side = np.float32(self.config.image_size)
        return self._encode((coords.astype(np.float32) + np.float32(0.5)) / side)

    def sparse_prompt(
        self, points: tuple[np.ndarray, np.ndarray] | None, box: np.ndarray | None
    ) -> np.ndarray:
        """Point and box-corner tokens, ``(N, C)``; points ``(x, y)`` of the model input with
        labels 1 / 0, a box ``(x0, y0, x1, y1)``."""
        w = self._w
        parts = [np.zeros((0, self.embed_dim), np.float32)]
        if points is not None:
            coords = np.asarray(points[0], np.float32).reshape(-1, 2)
            labels = np.asarray(points[1]).reshape(-1)
            tokens = self._frame(coords)
            tokens += np.where(labels[:, None] == 0, w[_PE + "point_embeddings.0.weight"], 0)
            tokens += np.where(labels[:, None] == 1, w[_PE + "point_embeddings.1.weight"], 0)
            parts.append(tokens)
            if box is None:  # SAM's "not a point" token, as the decoder was trained
                parts.append(w[_PE + "not_a_point_embed.weight"])
        if box is not None:
            corners = self._frame(np.asarray(box, np.float32).reshape(2, 2))
            corners += np.concatenate(
                [w[_PE + "point_embeddings.2.weight"], w[_PE + "point_embeddings.3.weight"]]
            )
            parts.append(corners)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def dense_prompt(self, mask_input: np.ndarray | None, hw: tuple[int, int]) -> np.ndarray:
        """The dense prompt on an ``(h, w)`` grid: the mask logits ``(4h, 4w)`` downscaled, or
        the "no mask" embedding, ``(C, h, w)`` (broadcast for no mask)."""
        if mask_input is None:
            return self._w[_PE + "no_mask_embed.weight"].reshape(-1, 1, 1)
        x = np.asarray(mask_input, np.float32).reshape(*mask_input.shape[-2:], 1)
        x = gelu(layer_norm(self._patch_conv(x, "0"), *self._norm(_PE + "mask_downscaling.1")))
        x = gelu(layer_norm(self._patch_conv(x, "3"), *self._norm(_PE + "mask_downscaling.4")))
        weight = self._w[_PE + "mask_downscaling.6.weight"][:, :, 0, 0]
        x = x @ weight.T + self._w[_PE + "mask_downscaling.6.bias"]
        return x.transpose(2, 0, 1)

    def _patch_conv(self, x: np.ndarray, index: str) -> np.ndarray:
        """A kernel-2, stride-2 convolution on channel-last ``(H, W, C)``: ``(H/2, W/2, O)``."""
        weight = self._w[f"{_PE}mask_downscaling.{index}.weight"]  # (O, C, 2, 2)
        h, w, c = x.shape
        patches = x.reshape(h // 2, 2, w // 2, 2, c).transpose(0, 2, 1, 3, 4)
        flat = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)  # (O, 2*2*C)
        out = patches.reshape(h // 2, w // 2, -1) @ flat.T
        return out + self._w[f"{_PE}mask_downscaling.{index}.bias"]

    def _norm(self, prefix: str) -> tuple[np.ndarray, np.ndarray, float]:
        # LayerNorm2d (the convolutions') uses 1e-6, nn.LayerNorm (the transformer's) 1e-5.
        eps = 1e-6 if "downscaling" in prefix or "upscaling" in prefix else 1e-5
        return self._w[prefix + ".weight"], self._w[prefix + ".bias"], eps

    # -- mask decoder -----------------------------------------------------------------------
    def decode_tokens(
        self,
        features: np.ndarray,
        image_pe: np.ndarray,
        *,
        points: tuple[np.ndarray, np.ndarray] | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
        image: ImageSide | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The transformer's image tokens ``(h*w, C)``, the chosen masks' hypernetwork weights
        ``(M, C/8)`` and their predicted IoU ``(M,)`` for features ``(C, h, w)`` (a window of
        the grid, with the same window of :meth:`dense_pe`). `image`, made by
        :meth:`image_side` from the same features, window and mask input, skips the work
        that depends on them alone (:meth:`prepared`: more of it, equal to rounding)."""
        if image is None:
            image = self.image_side(features, image_pe, mask_input)
        outputs = np.concatenate(
            [self._w[_MD + "iou_token.weight"], self._w[_MD + "mask_tokens.weight"]]
        )
        prompt = np.concatenate([outputs, self.sparse_prompt(points, box)])
        chosen = slice(1, None) if multimask else slice(0, 1)
        heads = range(self.num_mask_tokens)[chosen]  # only these pass the last attention
        hs, keys = self._transformer(image, prompt, [0, *(1 + i for i in heads)])
        hyper_in = np.stack(
            [
                self._mlp(f"{_MD}output_hypernetworks_mlps.{i}", hs[1 + j])
                for j, i in enumerate(heads)
            ]
        )
        iou = self._mlp(_MD + "iou_prediction_head", hs[0])
        return keys, hyper_in, iou[chosen]

    def image_side(
        self,
        features: np.ndarray,
        image_pe: np.ndarray,
        mask_input: np.ndarray | None = None,
    ) -> ImageSide:
        """The decoder's image side of features ``(C, h, w)`` and their window of
        :meth:`dense_pe`: token-major keys (the dense prompt added) and positional encoding
        (the whole grid's a view of :meth:`dense_pe`); not :meth:`prepared`."""
        hw = image_pe.shape[-2:]
        # (h, w, C) views: read in order where the features are token-major (a cache's,
        # `token_major`), a window's rows included; written token-major in one pass.
        tokens = np.asarray(features, np.float32).reshape(self.embed_dim, *hw).transpose(1, 2, 0)
        keys = np.empty((*hw, self.embed_dim), np.float32)
        np.add(tokens, self.dense_prompt(mask_input, hw).transpose(1, 2, 0), out=keys)
        keys = keys.reshape(-1, self.embed_dim)
        key_pe = np.asarray(image_pe, np.float32).transpose(1, 2, 0).reshape(-1, self.embed_dim)
        return ImageSide(keys, key_pe, None)

    def prepared(self, image: ImageSide) -> ImageSide:
        """`image` with the first block's projections that depend on it alone: they cost
        about three prompts' worth of what they save, so only features prompted again
        (a tile clicked again, a stitched object's tiles) are worth preparing; a slice in
        propagation is decoded once."""
        _, to_image, to_tokens = self._blocks[0]
        k = image.keys + image.key_pe
        first = (*to_image.project_keys_values(k, image.keys), to_tokens.project_queries(k))
        return ImageSide(image.keys, image.key_pe, first)

    def _transformer(
        self, image: ImageSide, prompt: np.ndarray, outputs: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two-way transformer: the `outputs` tokens (the only ones the decoder reads,
        each alone in the last attention) and the image tokens."""
        keys, key_pe = image.keys, image.key_pe
        queries = prompt
        for i, (self_attn, to_image, to_tokens) in enumerate(self._blocks):
            block = f"{_MD}transformer.layers.{i}."
            if i == 0:  # the first block's queries are the prompt itself, PE included
                queries = self_attn(queries, queries, queries)
            else:
                q = queries + prompt
                queries = queries + self_attn(q, q, queries)
            queries = layer_norm(queries, *self._norm(block + "norm1"))
            # The first block's image-only projections where the side was prepared (features
            # prompted again); else the products reordered, as in the other blocks.
            first = image.first if i == 0 else None
            k = None if first is not None else keys + key_pe
            kv, q_image = (first[:2], first[2]) if first is not None else (None, None)
            attn = to_image.tokens_to_image(queries + prompt, k, keys, kv)
            queries = layer_norm(queries + attn, *self._norm(block + "norm2"))
            mlp = self._linear(
                block + "mlp.lin2", np.maximum(self._linear(block + "mlp.lin1", queries), 0)
            )
            queries = layer_norm(queries + mlp, *self._norm(block + "norm3"))
            keys = to_tokens.image_to_tokens(
                k, queries + prompt, queries, queries=q_image, residual=keys
            )
            keys = layer_norm(keys, *self._norm(block + "norm4"))
        queries, prompt = queries[outputs], prompt[outputs]
        attn = self._final.tokens_to_image(queries + prompt, keys + key_pe, keys)
        return layer_norm(queries + attn, *self._norm(_MD + "transformer.norm_final_attn")), keys

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        # The weight transposed once, contiguous: the token MLP's (7 x 256) @ (256 x 2048)
        # reads its 2 MB weight in order, 390 -> 260 us with OpenBLAS.
        weight = self._transposed.get(name)
        if weight is None:
            weight = self._transposed[name] = np.ascontiguousarray(self._w[name + ".weight"].T)
        return x @ weight + self._w[name + ".bias"]

    def _mlp(self, name: str, x: np.ndarray) -> np.ndarray:
        layers = self._mlp_layers.get(name)
        if layers is None:
            layers = self._mlp_layers[name] = _count(self._w, name + ".layers.")
        for i in range(layers):
            x = self._linear(f"{name}.layers.{i}", x)
            if i < layers - 1:
                x = np.maximum(x, 0)
        return x

    def upscale_masks(
        self, tokens: np.ndarray, hyper_in: np.ndarray, hw: tuple[int, int]
    ) -> np.ndarray:
        """Logits ``(M, 4h, 4w)`` of image tokens ``(h*w, C)`` (row-major on an ``(h, w)``
        grid): the two transposed convolutions, then the product with each mask's weights.

        Each transposed convolution turns a pixel into 2 x 2 independently, and the layers
        between act on each pixel alone: the pixels stay in the order the products make
        them (token, then sub-pixel), and only the masks' logits are put in image order,
        not the 32 to 64 channels of every pixel.
        """
        h, w = hw
        up = _MD + "output_upscaling."
        x = self._subpixel_conv(np.asarray(tokens, np.float32), up + "0")
        x = gelu(layer_norm(x, *self._norm(up + "1")))
        x = gelu(self._subpixel_conv(x, up + "3"))
        masks = (hyper_in @ x.T).reshape(-1, h, w, 2, 2, 2, 2)  # (M, i, j, a, b, c, d)
        # Row 4i + 2a + c, column 4j + 2b + d.
        return masks.transpose(0, 1, 3, 5, 2, 4, 6).reshape(-1, 4 * h, 4 * w)

    def _subpixel_conv(self, x: np.ndarray, name: str) -> np.ndarray:
        """A kernel-2, stride-2 transposed convolution on pixels ``(n, C)``: ``(4n, O)``,
        each pixel's 2 x 2 outputs in a row, row-major."""
        weight = self._w[name + ".weight"]  # (C, O, 2, 2)
        c, o = weight.shape[:2]
        out = x @ weight.transpose(0, 2, 3, 1).reshape(c, 4 * o)
        out += np.tile(self._w[name + ".bias"], 4)
        return out.reshape(-1, o)


def _count(weights: Mapping[str, np.ndarray], prefix: str) -> int:
    """Number of numbered sub-modules ``prefix{i}.`` in a state dict."""
    return len({k[len(prefix) :].split(".")[0] for k in weights if k.startswith(prefix)})
