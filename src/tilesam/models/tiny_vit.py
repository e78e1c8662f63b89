"""TinyViT image encoder of MobileSAM.

The module tree and parameter names follow MobileSAM's official ``image_encoder`` key for
key, so its checkpoints load with ``strict=True`` and save back unchanged.  The forward
pass computes the same function but is organised for CPU speed:

* activations stay channels-last all the way: the convolution stages use ``(B, C, H, W)``
  views with channels-last strides (much faster in oneDNN than contiguous NCHW) and the
  transformer stages see the very same memory as ``(B, H, W, C)``, so switching between
  the two is a free ``permute``;
* outside of BatchNorm training the BatchNorm is folded into the convolution weights, which
  saves a full pass over every convolution output while keeping the state dict intact;
* GELU runs in place when autograd does not need its input (allocating a large fresh
  output costs more than the activation itself);
* window attention uses :func:`torch.nn.functional.scaled_dot_product_attention` with the
  learned relative-position bias as a float mask.

This module holds the transformer stages and the encoder; the convolutional parts (patch
embedding, MBConv, patch merging, the first stage) are in :mod:`tilesam.models.tiny_vit_conv`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tilesam.models.common import LayerNorm2d
from tilesam.models.tiny_vit_conv import ConvBN, ConvLayer, PatchEmbed, PatchMerging, gelu_

# The official encoder is a TinyViT ImageNet classifier with a segmentation neck added;
# its 1000-way head survives in every checkpoint.
_NUM_CLASSES = 1000


def _relative_bias_index(window_size: int) -> torch.Tensor:
    """Index into the bias table for every (query, key) pair of a square window.

    The official table gives each distinct ``(|dy|, |dx|)`` offset one slot, numbered in
    order of first appearance; scanning pairs from the top-left query, that order is simply
    ``|dy| * window_size + |dx|``.

    Returns
    -------
    torch.Tensor
        ``(N, N)`` int64 indices, ``N = window_size ** 2``, tokens in row-major order.
    """
    coords = torch.arange(window_size)
    rows = coords.repeat_interleave(window_size)
    cols = coords.repeat(window_size)
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window_size + dx


class Attention(nn.Module):
    """Multi-head self-attention within windows, with pre-norm and a learned position bias.

    Parameters
    ----------
    dim : int
        Token width.
    num_heads : int
        Heads; each has width ``dim // num_heads`` (TinyViT's ``attn_ratio`` is 1).
    window_size : int
        Side of the square windows the input tokens come from.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size**2))
        # Derived from window_size, so kept out of the state dict as in the official code.
        self.register_buffer(
            "attention_bias_idxs", _relative_bias_index(window_size), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend within each window.

        Parameters
        ----------
        x : torch.Tensor
            ``(num_windows, N, dim)`` tokens.

        Returns
        -------
        torch.Tensor
            ``(num_windows, N, dim)``.
        """
        n_win, n_tok, dim = x.shape
        # The official qkv output is grouped per head as [q | k | v], not as [q... | k... | v...].
        qkv = self.qkv(self.norm(x)).view(n_win, n_tok, self.num_heads, 3, -1)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        # The gather is tiny (heads x N x N), so it is redone each call rather than cached,
        # which keeps it correct after weights are loaded or trained.  The mask must be 4-D:
        # the fused CPU kernel rejects a 3-D one and SDPA then falls back to a ~5x slower path.
        bias = self.attention_biases[:, self.attention_bias_idxs].unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(n_win, n_tok, dim))


class Mlp(nn.Module):
    """Pre-norm two-layer perceptron with GELU."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(gelu_(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise 3x3 convolution, then an MLP.

    Parameters
    ----------
    dim : int
        Token width.
    num_heads : int
        Attention heads.
    window_size : int
        Side of the non-overlapping attention windows.
    mlp_ratio : float
        MLP hidden width over ``dim``.
    local_conv_size : int
        Kernel of the depthwise convolution between attention and MLP.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, groups=dim)

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Run attention on ``(B, H, W, C)`` tokens split into windows; same shape out."""
        b, h, w, c = x.shape
        ws = self.window_size
        pad_b, pad_r = -h % ws, -w % ws
        if pad_b or pad_r:
            # Zeros go in before the attention's LayerNorm, so padded tokens become the norm
            # bias and act as real (unmasked) keys: the official behaviour, kept on purpose.
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        n_h, n_w = (h + pad_b) // ws, (w + pad_r) // ws
        windows = x.view(b, n_h, ws, n_w, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        out = self.attn(windows).view(b, n_h, n_w, ws, ws, c).transpose(2, 3)
        return out.reshape(b, n_h * ws, n_w * ws, c)[:, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform ``(B, H, W, C)`` contiguous tokens; same shape out."""
        x = x + self._window_attention(x)
        # A channels-last NCHW view of the same memory: the convolution needs no copy.
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = self.mlp(x)
        y += x
        return y


class BasicLayer(nn.Module):
    """Transformer stage on ``(B, C, H, W)`` input, then an optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: PatchMerging | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Blocks want (B, H, W, C); for channels-last input both permutes are free.
        x = x.permute(0, 2, 3, 1)
        if not x.is_contiguous():
            x = x.contiguous()
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """MobileSAM's TinyViT image encoder (state-dict compatible with the official one).

    Parameters
    ----------
    img_size : int
        Side of the square, already normalised and padded input.
    in_chans : int
        Input channels.
    embed_dims : sequence of int
        Width of each stage; the first stage is convolutional, the others transformers.
    depths : sequence of int
        Blocks per stage.
    num_heads : sequence of int
        Attention heads per stage (the first entry is unused).
    window_sizes : sequence of int
        Attention window side per stage (the first entry is unused).
    mlp_ratio : float
        MLP hidden width over the token width.
    mbconv_expand_ratio : float
        Hidden width over input width of the MBConv blocks.
    local_conv_size : int
        Kernel of the depthwise convolution inside each transformer block.
    out_chans : int
        Channels of the output embedding.

    Notes
    -----
    The patch embedding divides the resolution by 4 and each patch merging by 2, except the
    one before the last stage, which keeps stride 1 as in MobileSAM: a 1024 input gives a
    64 x 64 embedding (stride 16 overall).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        n_stages = len(depths)
        if not len(embed_dims) == len(num_heads) == len(window_sizes) == n_stages:
            raise ValueError("embed_dims, depths, num_heads and window_sizes differ in length")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])

        self.layers = nn.ModuleList()
        for i in range(n_stages):
            downsample = None
            if i < n_stages - 1:
                stride = 1 if i == n_stages - 2 else 2
                downsample = PatchMerging(embed_dims[i], embed_dims[i + 1], stride)
            if i == 0:
                layer = ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, downsample)
            else:
                layer = BasicLayer(
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    local_conv_size,
                    downsample,
                )
            self.layers.append(layer)

        # Unused ImageNet classifier head, kept so official checkpoints load strictly and
        # round-trip unchanged.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], _NUM_CLASSES)
        self.apply(_init_linear)

        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, in_chans, img_size, img_size)`` normalised, padded images.

        Returns
        -------
        torch.Tensor
            ``(B, out_chans, img_size / 16, img_size / 16)`` contiguous embeddings.
        """
        if not self.training:
            # oneDNN convolutions are several times faster on channels-last data; every later
            # layer keeps that layout, so this is the only conversion.  Training keeps the
            # reference layout: with batch statistics, the channels-last CPU kernels gave
            # gradients ~50x less accurate than contiguous NCHW in our checks.
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x).contiguous()


def _init_linear(module: nn.Module) -> None:
    """Official initialisation of linear layers: truncated normal (std 0.02), zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
