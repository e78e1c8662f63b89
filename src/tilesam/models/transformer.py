"""SAM's two-way transformer: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tilesam.models.common import MLPBlock


@dataclass(frozen=True)
class ImageTokens:
    """The image side of the transformer, token-major, ready for many prompts.

    ``keys`` and ``key_pe`` are ``(B, h*w, C)``, ``size`` is ``(h, w)``. ``first_block``
    holds the first block's projections that depend on the image alone (the keys and
    values of token-to-image attention, the queries of image-to-token attention), computed
    once by :meth:`TwoWayTransformer.image_tokens` so that each prompt skips them.
    """

    keys: torch.Tensor
    key_pe: torch.Tensor
    size: tuple[int, int]
    first_block: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


class TwoWayTransformer(nn.Module):
    """Alternate token-to-image and image-to-token attention ``depth`` times.

    Parameters
    ----------
    depth, embedding_dim, num_heads, mlp_dim
        Number of blocks, token width, attention heads and MLP width.
    attention_downsample_rate
        Cross-attention works in ``embedding_dim / attention_downsample_rate`` channels.
    """

    def __init__(
        self,
        *,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=i == 0,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def image_tokens(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, *, precompute: bool = True
    ) -> ImageTokens:
        """``(B, C, h, w)`` features and positional encoding as :class:`ImageTokens`.

        With ``precompute`` the first block's image-only projections are computed too: worth
        it when several prompts will be decoded on the same features.
        """
        # Token-major and contiguous: element-wise ops on the transposed views are slow.
        size = tuple(image_embedding.shape[-2:])
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        if not precompute:
            return ImageTokens(keys, key_pe, size)
        first = self.layers[0]
        k = keys + key_pe
        kv = first.cross_attn_token_to_image.project_keys_values(k, keys)
        q = first.cross_attn_image_to_token.project_queries(k)
        return ImageTokens(keys, key_pe, size, (*kv, q))

    def forward(
        self,
        image_embedding: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        outputs: int | list[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return updated tokens ``(B, N, C)`` and image features ``(B, h*w, C)``.

        ``image_embedding`` is ``(B, C, h, w)`` features, or :class:`ImageTokens` made from
        them (then ``image_pe`` is not used again). With ``outputs`` (a number: the first
        that many tokens; a list: those tokens), only those tokens come out: the last
        attention treats each token alone, so the others (the prompt's own, and output
        tokens the decoder will not read) are skipped there.
        """
        image = image_embedding
        if not isinstance(image, ImageTokens):
            image = self.image_tokens(image, image_pe, precompute=False)
        keys, key_pe = image.keys, image.key_pe
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            queries, keys = layer(
                queries,
                keys,
                query_pe=point_embedding,
                key_pe=key_pe,
                image_only=image.first_block if i == 0 else None,
            )
        read = outputs if isinstance(outputs, list) else slice(None, outputs)
        queries, point_embedding = queries[:, read], point_embedding[:, read]
        attn = self.final_attn_token_to_image.tokens_to_image(
            q=queries + point_embedding, k=keys + key_pe, v=keys
        )
        return self.norm_final_attn(queries + attn), keys


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image, MLP, image-to-token; each with a residual norm."""

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int,
        skip_first_layer_pe: bool,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, act=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        image_only: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_only``: this block's precomputed image projections, see :class:`ImageTokens`."""
        if self.skip_first_layer_pe:
            # The first block's queries are the prompt embeddings themselves, PE included.
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        if image_only is None:
            k, kv_heads, q_heads = keys + key_pe, None, None
        else:
            k, kv_heads, q_heads = None, image_only[:2], image_only[2]
        attn = self.cross_attn_token_to_image.tokens_to_image(
            q=queries + query_pe, k=k, v=keys, kv_heads=kv_heads
        )
        queries = self.norm2(queries + attn)
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.cross_attn_image_to_token.image_to_tokens(
            q=k, k=q, v=queries, q_heads=q_heads, residual=keys
        )
        return queries, self.norm4(keys)


class Attention(nn.Module):
    """Multi-head attention with optional down-projection of the inner width.

    Besides the plain ``forward``, two entry points serve the decoder's cross-attention
    between a few prompt tokens and thousands of image tokens at inference.
    :meth:`tokens_to_image` and :meth:`image_to_tokens` reorder the same products so that
    no projection of the image tokens to the inner width is computed when the prompt side
    is small: a head's scores ``(x W_q^T)(y W_k^T)^T`` equal ``x (W_q^T W_k y^T)``, and its
    output ``P (y W_v^T) W_o^T`` equals ``P (y W_v^T W_o^T)``; the image tokens then meet
    a matrix of ``heads * prompt tokens`` columns instead of the inner width.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(f"{num_heads} heads do not divide the inner width {internal_dim}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(x.transpose(1, 2).flatten(2))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q_heads = self.project_queries(q)
        return self._merge(F.scaled_dot_product_attention(q_heads, *self.project_keys_values(k, v)))

    def project_queries(self, x: torch.Tensor) -> torch.Tensor:
        """Per-head queries ``(B, H, N, D)``."""
        return self._heads(self.q_proj(x))

    def project_keys_values(
        self, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head keys and values ``(B, H, N, D)``."""
        return self._heads(self.k_proj(k)), self._heads(self.v_proj(v))

    def _folds(self, prompt_tokens: int) -> bool:
        """Whether the reordered products are cheaper (and allowed: inference only).

        They cost as many multiply-adds as the plain path when ``heads * prompt tokens``
        equals the inner width, but stream the image tokens once where the plain path also
        writes their projections and reads them back: on a 2-core CPU, with ``tiny``, 9
        prompt tokens (a box and two points) decode 13 % faster folded, 11 about as fast.
        """
        inner = self.q_proj.out_features
        return self.num_heads * prompt_tokens <= 1.5 * inner and not torch.is_grad_enabled()

    def _weight_heads(self, layer: nn.Linear) -> torch.Tensor:
        """An input projection's weight as ``(H, D, C)``."""
        return layer.weight.view(self.num_heads, -1, layer.in_features)

    def tokens_to_image(
        self,
        q: torch.Tensor,
        k: torch.Tensor | None,
        v: torch.Tensor,
        kv_heads: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """A few prompt tokens ``q`` attend to the image tokens ``k`` / ``v`` ``(B, N, C)``.

        ``kv_heads``: the image tokens' projected keys and values, when already computed.
        """
        if kv_heads is not None:
            q_heads = self.project_queries(q)
            k_heads, v_heads = (t.expand(q_heads.shape[0], -1, -1, -1) for t in kv_heads)
            return self._merge(F.scaled_dot_product_attention(q_heads, k_heads, v_heads))
        if not self._folds(q.shape[1]):
            return self(q, k, v)
        b, n, _ = q.shape
        q_heads = self.project_queries(q)
        scale = q_heads.shape[-1] ** -0.5
        # k_proj's bias adds the same score to every key of a query: softmax ignores it.
        qk = torch.matmul(q_heads * scale, self._weight_heads(self.k_proj))  # (B, H, n, C)
        scores = qk.flatten(1, 2) @ k.transpose(1, 2)  # (B, H*n, N)
        pv = (scores.softmax(dim=-1) @ v).view(b, self.num_heads, n, -1)  # (B, H, n, C)
        v_bias = self.v_proj.bias.view(self.num_heads, 1, -1)
        out = torch.matmul(pv, self._weight_heads(self.v_proj).transpose(1, 2)) + v_bias
        return self._merge(out)

    def image_to_tokens(
        self,
        q: torch.Tensor | None,
        k: torch.Tensor,
        v: torch.Tensor,
        q_heads: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The image tokens ``q`` ``(B, N, C)`` attend to a few prompt tokens ``k`` / ``v``.

        ``q_heads``: the image tokens' projected queries, when already computed. With a
        ``residual`` ``(B, N, C)``, returns ``residual`` plus the attention, summed in the
        last product (the image-token tensors are the decoder's memory traffic).
        """
        n = k.shape[1]
        folds = self._folds(n)
        if q_heads is None and not folds and (n > _FEW_KEYS or torch.is_grad_enabled()):
            return _plus(residual, self(q, k, v))
        k_heads, v_heads = self.project_keys_values(k, v)
        scale = k_heads.shape[-1] ** -0.5
        if q_heads is None and folds:
            kq = torch.matmul(k_heads * scale, self._weight_heads(self.q_proj))  # (B, H, n, C)
            q_bias = torch.matmul(k_heads * scale, self.q_proj.bias.view(self.num_heads, -1, 1))
            scores = (kq.flatten(1, 2) @ q.transpose(1, 2)).unflatten(1, (self.num_heads, n))
            scores = scores + q_bias
        else:
            if q_heads is None:
                q_heads = self.project_queries(q)
            scores = torch.matmul(k_heads * scale, q_heads.transpose(-1, -2))  # (B, H, n, N)
        # A softmax over so short a last axis is slow on CPU: run it along the token axis.
        probs = scores.softmax(dim=-2)
        if not folds:
            return _plus(residual, self._merge(torch.matmul(probs.transpose(-1, -2), v_heads)))
        w_out = self.out_proj.weight.t().unflatten(0, (self.num_heads, -1))  # (H, D, C)
        # Each head's probabilities sum to 1 over the tokens, so adding bias / H to every
        # row of vo adds the bias once to the output.
        vo = torch.matmul(v_heads, w_out) + self.out_proj.bias / self.num_heads
        probs = probs.flatten(1, 2).transpose(1, 2)  # (B, N, H*n)
        if residual is None:
            return probs @ vo.flatten(1, 2)
        return torch.baddbmm(residual, probs, vo.flatten(1, 2))


def _plus(residual: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x if residual is None else residual + x


# Up to this many prompt tokens, image-to-token attention computes its softmax along the
# image-token axis (3x faster on CPU than SDPA for 4096 x 7 scores).
_FEW_KEYS = 16
