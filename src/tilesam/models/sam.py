"""The assembled SAM-family model: image encoder, prompt encoder and mask decoder."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tilesam.models.mask_decoder import MaskDecoder, grid_size
from tilesam.models.prompt_encoder import PromptEncoder
from tilesam.models.transformer import ImageTokens

# ImageNet statistics on the 0..255 scale, as the official SAM checkpoints expect.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """Image encoder + prompt encoder + mask decoder, with SAM's input normalisation.

    The state dict has the official layout (``image_encoder.*``, ``prompt_encoder.*``,
    ``mask_decoder.*``); the pixel statistics are not part of it.
    """

    # Sides, in tokens and ascending, of the windows of the embedding grid the decoder was
    # trained on, when smaller than the grid: prompts are then decoded on such a window (see
    # SamModel.predict). Empty: the whole grid, as SAM's own models are trained.
    decoder_windows: tuple[int, ...] = ()

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, float, float] = PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = PIXEL_STD,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def image_size(self) -> int:
        """Side of the square model input in pixels."""
        return self.prompt_encoder.input_image_size[0]

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, 3, h, w)`` images on the 0..255 scale and zero-pad to the input size.

        Padding comes after normalisation, so padded pixels are exactly zero, as in training.
        """
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.image_size - w, 0, self.image_size - h))

    def image_tokens(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor | None = None
    ) -> ImageTokens:
        """Prepare ``(1, C, h, w)`` features once for decoding many prompts without mask input.

        The result replaces ``image_embeddings`` in :meth:`decode`; it costs a few of the
        decoder's image-side projections once instead of at every prompt.
        """
        if image_pe is None:
            image_pe = self.prompt_encoder.get_dense_pe()
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return self.mask_decoder.image_tokens(image_embeddings, image_pe, no_mask)

    def decode(
        self, image_embeddings: torch.Tensor | ImageTokens, **prompt: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings, then the decoder: low-res logits ``(B, M, 4h, 4w)`` and IoU.

        Takes the arguments of :meth:`decode_tokens` (``points``, ``boxes``, ``mask_input``,
        ``multimask_output``, ``image_pe``) and upscales the masks on the whole grid.
        """
        tokens, hyper_in, iou = self.decode_tokens(image_embeddings, **prompt)
        size = grid_size(image_embeddings)
        return self.mask_decoder.upscale_masks(tokens, hyper_in, size), iou

    def decode_tokens(
        self,
        image_embeddings: torch.Tensor | ImageTokens,
        *,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        image_pe: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The decoder up to the logits (see :meth:`MaskDecoder.decode_tokens`): image tokens
        and hypernetwork weights, to upscale only where a mask is needed, and IoU.

        ``image_pe`` is the prompt encoder's ``get_dense_pe()``; callers that decode many
        prompts with fixed weights pass it precomputed. ``image_embeddings`` may be
        :meth:`image_tokens` of the features when there is no ``mask_input``.
        """
        if isinstance(image_embeddings, ImageTokens) and mask_input is not None:
            raise ValueError("ImageTokens hold the no-mask dense prompt: pass the features")
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        if mask_input is None:
            # The same embedding at every token: cut to the grid, which may be a window.
            h, w = grid_size(image_embeddings)
            dense = dense[..., :h, :w]
        if image_pe is None:
            image_pe = self.prompt_encoder.get_dense_pe()
        return self.mask_decoder.decode_tokens(
            image_embeddings, image_pe, sparse, dense, multimask_output
        )
