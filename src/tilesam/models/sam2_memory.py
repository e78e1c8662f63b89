"""SAM 2's memory encoder: a frame's features fused with its predicted mask.

State-dict compatible with the official ``memory_encoder.*`` keys. The mask (already turned
into scaled probabilities by the caller) is downsampled 16 times by strided convolutions, added
to the projected image features, mixed by ConvNeXt blocks and projected to the memory width
(64 for every official size). The sine position encodings here serve the memory and, at the
image embedding's width, the memory attention's queries (the official FPN neck's encoding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tilesam.models.common import LayerNorm2d


def sine_position_encoding(dim: int, size: tuple[int, int]) -> torch.Tensor:
    """The DETR-style 2-D sine encoding of a ``size`` grid, ``(1, dim, h, w)``.

    Half the channels encode the row, half the column; positions are normalised to
    ``(0, 2 pi]`` (rows counted from 1), and sines and cosines alternate within each half.
    """
    half = dim // 2
    h, w = size
    eps, scale = 1e-6, 2 * math.pi
    rows = torch.arange(1, h + 1, dtype=torch.float32)
    cols = torch.arange(1, w + 1, dtype=torch.float32)
    rows = rows / (rows[-1] + eps) * scale
    cols = cols / (cols[-1] + eps) * scale
    steps = torch.arange(half, dtype=torch.float32)
    freq = 10000 ** (2 * torch.div(steps, 2, rounding_mode="floor") / half)

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions[:, None] / freq
        # Even channels take the sine and odd ones the cosine of their angle.
        return torch.where(steps.long() % 2 == 0, angles.sin(), angles.cos())

    pos_y = encode(rows)[:, None, :].expand(h, w, half)
    pos_x = encode(cols)[None, :, :].expand(h, w, half)
    return torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1)[None].contiguous()


def sine_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """1-D sine encoding ``(N, dim)`` of ``(N,)`` positions: all sines, then all cosines
    (the object pointers' temporal encoding)."""
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=positions.device)
    freq = 10000 ** (2 * torch.div(steps, 2, rounding_mode="floor") / half)
    angles = positions.float()[:, None] / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class MaskDownSampler(nn.Module):
    """Strided 3 x 3 convolutions (each halving the mask and multiplying the channels by 4,
    with channel LayerNorm and GELU), then a 1 x 1 projection to ``embed_dim``.

    The official layout (``encoder.0`` conv, ``.1`` norm, ``.2`` GELU, ...) gives the keys.
    """

    def __init__(self, embed_dim: int = 256, total_stride: int = 16, stride: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(round(math.log(total_stride, stride))):
            out = channels * stride**2
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, stride=stride, padding=1),
                LayerNorm2d(out),
                nn.GELU(),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` to ``(B, embed_dim, H / total_stride, W / total_stride)``."""
        return self.encoder(mask)


class CXBlock(nn.Module):
    """A ConvNeXt block: depth-wise 7 x 7 convolution, channel LayerNorm, an MLP applied per
    pixel (channel-last linear layers, as the official keys have them), scaled residual."""

    def __init__(self, dim: int = 256, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """A stack of :class:`CXBlock` (two in SAM 2.1); no input projection."""

    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Image features and a mask to one frame's memory ``(B, out_dim, h, w)``.

    Parameters
    ----------
    in_dim
        Width of the image features (the image embedding's, 256).
    out_dim
        Width of the memory (64 in every official SAM 2.1).
    """

    def __init__(self, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``features`` ``(B, in_dim, h, w)`` (the backbone's, without ``no_mem_embed``) and
        ``mask`` ``(B, 1, 16h, 16w)``, already mapped to the scale the encoder was trained on
        (the caller applies SAM 2's sigmoid, scale and bias)."""
        x = self.pix_feat_proj(features) + self.mask_downsampler(mask)
        return self.out_proj(self.fuser(x))

    def position_encoding(self, size: tuple[int, int]) -> torch.Tensor:
        """The memory's position encoding ``(1, out_dim, h, w)``: the same for every frame."""
        return sine_position_encoding(self.out_dim, size)
