"""The image encoder of TileSAM's bundled ``tiny`` model: a small, fully convolutional net.

Why convolutional: it embeds a 1024 x 1024 tile in a fraction of a second on a laptop CPU,
it has no absolute position embedding (a tile's embedding depends only on its pixels, so
tiles of a large image and crops used in training look alike), and it can be trained from
scratch on a CPU with crops smaller than the model input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tilesam.models.common import LayerNorm2d


class TinyCNNEncoder(nn.Module):
    """Stride-16 CNN: ``(B, 3, H, W)`` to ``(B, out_chans, H / 16, W / 16)``.

    Parameters
    ----------
    widths
        Channels at strides 4, 8, 16 and 32.
    depths
        Inverted-residual blocks at those strides.
    out_chans
        Channels of the embedding.
    """

    def __init__(
        self,
        *,
        widths: tuple[int, int, int, int] = (32, 64, 128, 192),
        depths: tuple[int, int, int, int] = (1, 2, 4, 2),
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, widths[0], stride=2))
        self.stages = nn.ModuleList()
        for i, (width, depth) in enumerate(zip(widths, depths)):
            down = nn.Identity() if i == 0 else conv_bn(widths[i - 1], width, stride=2)
            # Growing dilation widens the receptive field at stride 16 at no extra cost.
            dilations = [1 + j % 3 if i >= 2 else 1 for j in range(depth)]
            blocks = [InvertedResidual(width, dilation=d) for d in dilations]
            self.stages.append(nn.Sequential(down, *blocks))
        # The stride-32 context is added back at stride 16, like a one-level FPN.
        self.lateral = nn.Conv2d(widths[3], widths[2], kernel_size=1)
        self.neck = nn.Sequential(
            nn.Conv2d(widths[2], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, groups=out_chans, bias=False),
            nn.Conv2d(out_chans, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stages[0](x)
        x = self.stages[1](x)
        s16 = self.stages[2](x)
        s32 = self.stages[3](s16)
        context = F.interpolate(self.lateral(s32), size=s16.shape[-2:], mode="nearest")
        return self.neck(s16 + context)


def conv_bn(in_ch: int, out_ch: int, *, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, GELU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.GELU(),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: expand 1x1, depthwise 3x3 (dilated), project 1x1, residual."""

    def __init__(self, channels: int, *, expand: int = 2, dilation: int = 1) -> None:
        super().__init__()
        hidden = channels * expand
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(
                hidden,
                hidden,
                kernel_size=3,
                padding=dilation,
                dilation=dilation,
                groups=hidden,
                bias=False,
            ),
            nn.BatchNorm2d(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
