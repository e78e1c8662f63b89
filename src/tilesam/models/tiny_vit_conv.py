"""The convolutional parts of MobileSAM's TinyViT encoder (see :mod:`tilesam.models.tiny_vit`).

Convolution + BatchNorm (folded into the convolution outside BatchNorm training), the patch
embedding, MBConv blocks, patch merging and the first, convolutional, stage; and the in-place
GELU every part of the encoder uses. Parameter names follow the official ``image_encoder``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvBN", "ConvLayer", "MBConv", "PatchEmbed", "PatchMerging", "gelu_"]


def gelu_(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU, in place unless autograd needs the input.

    Parameters
    ----------
    x : torch.Tensor
        A freshly computed tensor that nothing else refers to.

    Returns
    -------
    torch.Tensor
        ``gelu(x)``; the same tensor as ``x`` when computed in place.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


class ConvBN(nn.Module):
    """Bias-free ``Conv2d`` followed by ``BatchNorm2d`` (official keys ``c.*``, ``bn.*``).

    Parameters
    ----------
    in_chans, out_chans : int
        Input and output channels.
    kernel_size : int
        Square kernel size; the padding is ``kernel_size // 2``.
    stride : int
        Convolution stride.
    groups : int
        Convolution groups (``in_chans`` for a depthwise convolution).
    bn_weight_init : float
        Initial BatchNorm scale; 0 makes a residual branch start as the identity.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(self.bn.weight, bn_weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn.training:
            return self.bn(self.c(x))
        # With running statistics BatchNorm is affine per channel, so it folds exactly into
        # the convolution (gradients included); this skips a pass over the output.
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = self.c.weight * scale[:, None, None, None]
        bias = bn.bias - bn.running_mean * scale
        return F.conv2d(x, weight, bias, self.c.stride, self.c.padding, groups=self.c.groups)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: image to a quarter-resolution feature map."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        # The GELU sits in the Sequential only so that the convolutions keep the official
        # indices ``seq.0`` and ``seq.2``; forward applies it in place itself.
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, stride=2),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq[2](gelu_(self.seq[0](x)))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, add, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = gelu_(self.conv2(gelu_(self.conv1(x))))
        y = self.conv3(y)
        y += x
        return gelu_(y)


class PatchMerging(nn.Module):
    """Change the width with 1x1 convolutions around a strided 3x3 depthwise convolution.

    Parameters
    ----------
    dim, out_dim : int
        Input and output channels.
    stride : int
        2 halves the resolution; MobileSAM uses 1 before its last stage.
    """

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(gelu_(self.conv2(gelu_(self.conv1(x)))))


class ConvLayer(nn.Module):
    """First stage: MBConv blocks on ``(B, C, H, W)``, then an optional patch merging."""

    def __init__(
        self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)
