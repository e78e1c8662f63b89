"""SAM's mask decoder: a two-way transformer, then hypernetwork heads for masks and IoU."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tilesam.models.common import LayerNorm2d
from tilesam.models.transformer import ImageTokens, TwoWayTransformer


class MaskDecoder(nn.Module):
    """Predict ``num_multimask_outputs + 1`` masks and their IoU from prompt and image tokens.

    Parameters
    ----------
    transformer_dim
        Token width (the image-embedding channels).
    transformer
        The :class:`TwoWayTransformer` to run tokens and image through.
    num_multimask_outputs
        Alternative masks for an ambiguous prompt (plus one single-mask output).
    iou_head_depth, iou_head_hidden_dim
        Shape of the MLP that predicts each mask's IoU.
    """

    def __init__(
        self,
        *,
        transformer_dim: int = 256,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, num_layers=3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, num_layers=iou_head_depth
        )

    def image_tokens(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> ImageTokens:
        """Features plus a dense prompt, prepared once to decode many sparse prompts on them.

        Pass the result as ``image_embeddings`` to :meth:`forward` with the same dense prompt
        (in practice the "no mask" embedding: mask inputs differ per prompt).
        """
        return self.transformer.image_tokens(image_embeddings + dense_prompt_embeddings, image_pe)

    def forward(
        self,
        image_embeddings: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return low-resolution mask logits ``(B, M, 4h, 4w)`` and IoU ``(B, M)``.

        ``image_embeddings`` is ``(1, C, h, w)`` (shared by every prompt) or ``(B, C, h, w)``
        (one per prompt, as in training), or :class:`ImageTokens` from :meth:`image_tokens`,
        which already hold the dense prompt (``dense_prompt_embeddings`` is then ignored).
        ``M`` is 3 with ``multimask_output`` and 1 without.
        """
        tokens, hyper_in, iou = self.decode_tokens(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            multimask_output,
        )
        return self.upscale_masks(tokens, hyper_in, grid_size(image_embeddings)), iou

    def decode_tokens(
        self,
        image_embeddings: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` short of its last step: the transformer's image tokens
        ``(B, h*w, C)``, the chosen masks' hypernetwork weights ``(B, M, C/8)`` and their IoU.

        :meth:`upscale_masks` turns the first two into logits, for the whole grid or for
        any window of it (each logit depends on one image token only).
        """
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.expand(batch, -1, -1), sparse_prompt_embeddings], dim=1)
        image = image_embeddings
        if not isinstance(image, ImageTokens):
            src = image.expand(batch, -1, -1, -1) + dense_prompt_embeddings
            image = self.transformer.image_tokens(src, image_pe, precompute=False)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        # In training every head runs (a few small products), so that the unchosen ones get
        # zero gradients, as in SAM, rather than none. At inference only the chosen masks'
        # tokens pass the last attention: one mask's 2 tokens of 5 cost 40 % of its products.
        every = range(self.num_mask_tokens)
        heads = every if torch.is_grad_enabled() else every[chosen]
        hs, src = self.transformer(image, image_pe, tokens, outputs=[0, *(1 + i for i in heads)])
        mlps = self.output_hypernetworks_mlps
        hyper_in = torch.stack([mlps[i](hs[:, 1 + j]) for j, i in enumerate(heads)], dim=1)
        iou = self.iou_prediction_head(hs[:, 0])
        if heads is every:
            hyper_in = hyper_in[:, chosen]
        return src, hyper_in, iou[:, chosen]

    def upscale_masks(
        self, tokens: torch.Tensor, hyper_in: torch.Tensor, hw: tuple[int, int]
    ) -> torch.Tensor:
        """``output_upscaling`` and the hypernetwork product: ``(B, M, 4h, 4w)`` logits.

        Same arithmetic as running the ``output_upscaling`` modules on ``(B, C, h, w)``, but
        on the transformer's token-major ``(B, h*w, C)`` output: each stride-2 transposed
        convolution is a matrix product per pixel, layer norm and GELU act per pixel. The
        2 x 2 sub-pixels of the first convolution are put in place on its narrow output;
        those of the second on the few mask channels, after the hypernetwork product (taken
        as ``hyper_in @ pixels^T`` so that the masks come out channel-first).
        """
        up1, norm, act1, up2, act2 = self.output_upscaling
        b = tokens.shape[0]
        h, w = hw
        x = _subpixel_conv(tokens, up1)  # (B, h*w*4, C/4): pixel (i, j), then sub-pixel (a, b)
        x = act1(F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps))
        x = x.view(b, h, w, 2, 2, -1).transpose(2, 3).reshape(b, 4 * h * w, -1)  # row-major
        x = act2(_subpixel_conv(x, up2))  # (B, 2h*2w*4, C/8)
        masks = hyper_in @ x.transpose(1, 2)  # (B, M, 2h*2w*4)
        # Pixel (2y + c, 2x + d) of mask m sits at [m, y, x, c, d].
        masks = masks.view(b, -1, 2 * h, 2 * w, 2, 2).permute(0, 1, 2, 4, 3, 5)
        return masks.reshape(b, -1, 4 * h, 4 * w)


def _subpixel_conv(x: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """A kernel-2, stride-2 transposed convolution on channel-last pixels ``(B, N, C_in)``:
    ``(B, N * 4, C_out)``, each pixel followed by its 2 x 2 sub-pixels in row-major order."""
    c_in, c_out = conv.weight.shape[:2]
    weight = conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)
    out = torch.addmm(conv.bias.repeat(4), x.flatten(0, 1), weight)
    return out.view(x.shape[0], -1, c_out)


def grid_size(image: torch.Tensor | ImageTokens) -> tuple[int, int]:
    """``(h, w)`` of features ``(B, C, h, w)`` or of :class:`ImageTokens`."""
    return image.size if isinstance(image, ImageTokens) else tuple(image.shape[-2:])


class MLP(nn.Module):
    """A stack of linear layers with an activation (ReLU unless `act` says) between them."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        act: Callable[[torch.Tensor], torch.Tensor] = torch.relu,
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x
