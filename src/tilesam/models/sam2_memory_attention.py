"""SAM 2's memory attention: the current frame's features attend to the memory bank.

State-dict compatible with the official ``memory_attention.*`` keys. Each layer is pre-norm:
self-attention over the frame's tokens, cross-attention to the memory (keys carry the
memory's position and time encodings), an MLP. Both attentions use axial rotary position
encoding (RoPE) on the ``h x w`` grid; every memory frame's tokens get the grid's rotations
again, and the object-pointer tokens at the end of the memory get none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def axial_rotations(dim: int, size: tuple[int, int], theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles ``(h * w, dim / 2)`` of axial RoPE on a row-major ``size`` grid.

    The first half of the channel pairs turn with the column, the second half with the row,
    each at ``dim / 4`` frequencies ``theta ** (-4 k / dim)``.
    """
    h, w = size
    freq = 1.0 / theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim)
    index = torch.arange(h * w, dtype=torch.float32)
    cols, rows = index % w, torch.div(index, w, rounding_mode="floor")
    return torch.cat([torch.outer(cols, freq), torch.outer(rows, freq)], dim=-1)


def rotate(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Turn each adjacent channel pair ``(x[2i], x[2i+1])`` of ``x`` ``(..., N, dim)`` by
    ``angles`` ``(N', dim / 2)``; tokens beyond ``N'`` repeat the angles (``N`` a multiple
    of ``N'``), so every memory frame gets the same grid positions."""
    return rotate_cos_sin(x, angles.cos(), angles.sin())


def rotate_cos_sin(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_exclude: int = 0
) -> torch.Tensor:
    """:func:`rotate` with the angles' cosines and sines given (computed once per grid), the
    last ``num_exclude`` tokens left as they are (the object pointers).

    The same arithmetic as a repeat of the angles and a stack of the turned pairs, bit for
    bit, but the angles are broadcast over the repeats and the pairs written in place.
    """
    rotated = x.shape[-2] - num_exclude
    grid, pairs = cos.shape
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    pair = x[..., :rotated, :].float().reshape(*x.shape[:-2], rotated // grid, grid, pairs, 2)
    turned = out[..., :rotated, :].view(*x.shape[:-2], rotated // grid, grid, pairs, 2)
    real, imag = pair[..., 0], pair[..., 1]
    torch.sub(real * cos, imag * sin, out=turned[..., 0])
    torch.add(real * sin, imag * cos, out=turned[..., 1])
    if num_exclude:
        out[..., rotated:, :] = x[..., rotated:, :]
    return out.type_as(x)


class RoPEAttention(nn.Module):
    """Multi-head attention with axial RoPE on the queries and on the first keys.

    ``kv_dim`` is the width of the keys and values coming in (the memory's 64 for
    cross-attention); all are projected to ``dim``.
    """

    def __init__(
        self, dim: int = 256, num_heads: int = 1, kv_dim: int | None = None, theta: float = 1e4
    ) -> None:
        super().__init__()
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads, self.theta = num_heads, theta
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self._angles: dict[tuple[int, int], torch.Tensor] = {}
        self._cos_sin: dict[tuple[int, int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def angles(self, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The rotations for a ``size`` query grid, computed once per size."""
        if size not in self._angles:
            head_dim = self.q_proj.out_features // self.num_heads
            self._angles[size] = axial_rotations(head_dim, size, self.theta)
        return self._angles[size].to(device)

    def cos_sin(self, size: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, ...]:
        """Cosines and sines of :meth:`angles`, computed once per size and device."""
        key = (*size, device)
        if key not in self._cos_sin:
            angles = self.angles(size, device)
            self._cos_sin[key] = (angles.cos(), angles.sin())
        return self._cos_sin[key]

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        size: tuple[int, int],
        num_k_exclude_rope: int = 0,
    ) -> torch.Tensor:
        """``q`` ``(B, h*w, dim)``, ``k`` and ``v`` ``(B, M, kv_dim)``; the last
        ``num_k_exclude_rope`` keys (object pointers) are not rotated."""
        q, k, v = (
            self._heads(p(x)) for p, x in ((self.q_proj, q), (self.k_proj, k), (self.v_proj, v))
        )
        cos, sin = self.cos_sin(size, q.device)
        q = rotate_cos_sin(q, cos, sin)
        k = rotate_cos_sin(k, cos, sin, num_k_exclude_rope)
        out = F.scaled_dot_product_attention(q, k, v)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class MemoryAttentionLayer(nn.Module):
    """Self-attention, cross-attention to the memory, MLP (ReLU); each pre-norm, residual.

    As SAM 2.1 is configured, the position encoding is added to the memory's keys only: the
    queries' position comes from RoPE (and from the encoding added once at the input).
    """

    def __init__(
        self, dim: int = 256, mem_dim: int = 64, num_heads: int = 1, mlp_dim: int = 2048
    ) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(dim, num_heads)
        self.cross_attn_image = RoPEAttention(dim, num_heads, kv_dim=mem_dim)
        self.linear1 = nn.Linear(dim, mlp_dim)
        self.linear2 = nn.Linear(mlp_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        size: tuple[int, int],
        num_obj_ptr_tokens: int,
    ) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y, size)
        y = self.norm2(x)
        x = x + self.cross_attn_image(y, memory + memory_pos, memory, size, num_obj_ptr_tokens)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """A stack of :class:`MemoryAttentionLayer` (four in SAM 2.1) and a final LayerNorm.

    Parameters
    ----------
    num_layers
        Layers (the official checkpoints have 4; the count is read from a checkpoint).
    dim, mem_dim
        Width of the image tokens and of the memory tokens.
    """

    def __init__(self, num_layers: int = 4, dim: int = 256, mem_dim: int = 64) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(dim, mem_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        features: torch.Tensor,
        pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """The frame's ``features`` ``(B, C, h, w)`` conditioned on ``memory`` ``(B, M, mem_dim)``
        (spatial memories first, ``num_obj_ptr_tokens`` pointer tokens last); ``pos`` is the
        features' sine encoding ``(1, C, h, w)``, ``memory_pos`` the memory's ``(B, M, mem_dim)``.
        Returns ``(B, C, h, w)``."""
        b, c, h, w = features.shape
        x = (features + 0.1 * pos).flatten(2).transpose(1, 2)
        for layer in self.layers:
            x = layer(x, memory, memory_pos, (h, w), num_obj_ptr_tokens)
        return self.norm(x).transpose(1, 2).reshape(b, c, h, w)
