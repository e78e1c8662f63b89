"""SAM 2's image encoder: the hierarchical Hiera trunk and the FPN neck.

State-dict compatible with the official ``image_encoder.trunk.*`` / ``image_encoder.neck.*``
keys. The trunk works channel-last, ``(B, H, W, C)``; its four stages halve the grid and
double the width; the neck projects every stage to ``d_model`` channels and adds the coarser
level (upsampled) to the levels listed in ``top_down_levels``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tilesam.models.mask_decoder import MLP


def _pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Max-pool a channel-last ``(B, H, W, C)`` map by `stride` (Hiera's query pooling)."""
    x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return x.permute(0, 2, 3, 1)


def _partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` to ``(B * windows, window, window, C)``, zero-padded bottom and right
    to whole windows; also returns the padded ``(H, W)``."""
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c), (hp, wp)


def _unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """The inverse of :func:`_partition`, padding cut off: ``(B, H, W, C)``."""
    hp, wp = padded
    b = windows.shape[0] // (hp * wp // window**2)
    x = windows.reshape(b, hp // window, wp // window, window, window, -1).transpose(2, 3)
    x = x.reshape(b, hp, wp, -1)
    return x[:, : size[0], : size[1]]


class HieraAttention(nn.Module):
    """Multi-head self-attention whose queries may be pooled (where a stage begins), so that
    the output has the next stage's grid while keys and values keep this one's."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: int = 0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` to ``(B, H', W', C_out)`` (``H' = H / q_stride`` when pooling)."""
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
        if self.q_stride:
            q = _pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class HieraBlock(nn.Module):
    """Pre-norm transformer block, windowed (``window > 0``) or global; the first block of a
    stage pools its queries and projects its shortcut to the wider ``dim_out``."""

    def __init__(
        self, dim: int, dim_out: int, num_heads: int, window: int, q_stride: int = 0
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window, self.q_stride = window, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = HieraAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, 4 * dim_out, dim_out, num_layers=2, act=F.gelu)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            # The shortcut is taken from the normalised input here, as in the official model.
            shortcut = self.proj(x)
            if self.q_stride:
                shortcut = _pool(shortcut, self.q_stride)
        window = self.window
        if window:
            x, padded = _partition(x, window)
        x = self.attn(x)
        if window:
            if self.q_stride:  # the windows shrank with the queries
                window //= self.q_stride
                h, w = shortcut.shape[1:3]
                padded = (h + -h % window, w + -w % window)
            x = _unpartition(x, window, padded, shortcut.shape[1:3])
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """A 7 x 7, stride-4 convolution to channel-last tokens."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The Hiera trunk: four stages of :class:`HieraBlock`, features at every stage's end.

    Parameters
    ----------
    embed_dim, num_heads
        Width and heads of the first stage; each later stage doubles both.
    stages
        Blocks per stage.
    global_att_blocks
        Blocks (counted over all stages) that attend globally instead of in windows.
    window_spec
        Window side per stage. A stage's first block still uses the previous stage's window
        (it works on the previous grid, pooling its queries).
    window_pos_embed_bkg_spatial_size
        Grid of the background positional embedding, interpolated to the token grid; a
        ``window_spec[0]``-sided window embedding is tiled over it.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        num_heads: int = 1,
        stages: Sequence[int] = (2, 3, 16, 3),
        global_att_blocks: Sequence[int] = (12, 16, 20),
        window_spec: Sequence[int] = (8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size: Sequence[int] = (14, 14),
        q_stride: int = 2,
    ) -> None:
        super().__init__()
        ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        self.stage_ends = tuple(ends)
        self.patch_embed = PatchEmbed(embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, window_spec[0], window_spec[0])
        )
        self.blocks = nn.ModuleList()
        dim, heads = embed_dim, num_heads
        for i in range(sum(stages)):
            stage_of_input = sum(e < i - 1 for e in ends)  # the stage whose grid comes in
            window = 0 if i in global_att_blocks else window_spec[stage_of_input]
            starts_stage = i - 1 in ends
            dim_out = 2 * dim if starts_stage else dim
            heads = 2 * heads if starts_stage else heads
            stride = q_stride if starts_stage else 0
            self.blocks.append(HieraBlock(dim, dim_out, heads, window, stride))
            dim = dim_out
        self.channels = tuple(self.blocks[e].dim_out for e in ends)

    def _pos_embed(self, size: tuple[int, int]) -> torch.Tensor:
        """Background embedding interpolated to `size`, plus the tiled window embedding."""
        pos = F.interpolate(self.pos_embed, size=size, mode="bicubic")
        window = self.pos_embed_window
        pos = pos + window.tile(1, 1, size[0] // window.shape[-2], size[1] // window.shape[-1])
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` to every stage's output ``(B, C_i, H / 4 / 2**i, W / 4 / 2**i)``."""
        x = self.patch_embed(x)
        x = x + self._pos_embed(tuple(x.shape[1:3]))
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class FpnNeck(nn.Module):
    """Project each trunk level to ``d_model`` channels (1 x 1 convolutions, ``convs[0]`` for
    the coarsest) and add the coarser result, upsampled by nearest neighbour, to the levels
    in `top_down_levels` (SAM 2.1: the two coarsest)."""

    def __init__(
        self,
        channels: Sequence[int],
        d_model: int = 256,
        top_down_levels: Sequence[int] = (2, 3),
    ) -> None:
        super().__init__()
        self.top_down_levels = tuple(top_down_levels)
        # Coarsest first, as the official key order (convs.0 reads the last stage).
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(c, d_model, kernel_size=1)))
            for c in reversed(channels)
        )

    def forward(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Trunk levels, finest first, to as many ``d_model`` maps, finest first."""
        n = len(levels) - 1
        out: list[torch.Tensor] = [levels[0]] * len(levels)
        previous = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](levels[i])
            if i in self.top_down_levels and previous is not None:
                up = F.interpolate(previous.float(), scale_factor=2.0, mode="nearest")
                previous = lateral + up
            else:
                previous = lateral
            out[i] = previous
        return out


class Sam2ImageEncoder(nn.Module):
    """Trunk and neck; the coarsest level is dropped (``scalp``), as in SAM 2.1.

    Returns the stride-4, stride-8 and stride-16 maps of ``d_model`` channels; the last is
    the image embedding, the others feed the mask decoder's high-resolution path.
    """

    def __init__(
        self,
        *,
        trunk: dict,
        d_model: int = 256,
        top_down_levels: Sequence[int] = (2, 3),
        scalp: int = 1,
    ) -> None:
        super().__init__()
        self.trunk = Hiera(**trunk)
        self.neck = FpnNeck(self.trunk.channels, d_model, top_down_levels)
        self.scalp = scalp

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.neck(self.trunk(x))
        return features[: len(features) - self.scalp]
