"""SAM's prompt encoder: points, boxes and low-resolution masks to decoder inputs.

Coordinates here are SAM's ``(x, y)`` in the model-input frame (after resizing), like the
official code; the public API converts from ``(y, x)`` image coordinates.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tilesam.models.common import LayerNorm2d

# Rows of ``point_embeddings``: negative point, positive point, box top-left, box bottom-right.
NEGATIVE, POSITIVE, BOX_START, BOX_END = 0, 1, 2, 3
PADDING_LABEL = -1


class PromptEncoder(nn.Module):
    """Embed sparse prompts (points, box corners) and a dense prompt (mask logits).

    Parameters
    ----------
    embed_dim
        Width of the prompt embeddings (the decoder's transformer width).
    image_embedding_size
        ``(h, w)`` of the image embedding.
    input_image_size
        ``(H, W)`` of the padded model input, the frame of point coordinates.
    mask_in_chans
        Hidden channels of the mask-downscaling convolutions.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 256,
        image_embedding_size: tuple[int, int] = (64, 64),
        input_image_size: tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid, ``(1, C, h, w)``."""
        return self.pe_layer(self.image_embedding_size)[None]

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return sparse ``(B, N, C)`` and dense ``(B, C, h, w)`` prompt embeddings.

        ``points`` is ``(coords (B, N, 2), labels (B, N))``, ``boxes`` ``(B, 4)`` as
        ``x0, y0, x1, y1``, ``masks`` ``(B, 1, 4h, 4w)`` logits.
        """
        batch = _batch_size(points, boxes, masks)
        parts = [torch.empty(batch, 0, self.embed_dim, device=self.no_mask_embed.weight.device)]
        if points is not None:
            parts.append(self._embed_points(*points, pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(boxes))
        sparse = torch.cat(parts, dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
        return sparse, dense

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        coords = coords + 0.5  # to the pixel centre
        if pad:
            # Without a box, SAM appends one "not a point" token; the decoder was trained so.
            coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
            labels = torch.cat([labels, torch.full_like(labels[:, :1], PADDING_LABEL)], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        labels = labels[..., None]
        embedding = torch.where(labels == PADDING_LABEL, self.not_a_point_embed.weight, embedding)
        embedding = embedding + torch.where(labels == NEGATIVE, self.point_embeddings[0].weight, 0)
        return embedding + torch.where(labels == POSITIVE, self.point_embeddings[1].weight, 0)

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_tokens = torch.cat(
            [self.point_embeddings[BOX_START].weight, self.point_embeddings[BOX_END].weight]
        )
        return embedding + corner_tokens


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised ``(x, y)`` coordinates."""

    def __init__(self, num_pos_feats: int = 64, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats)
        )

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates in ``[0, 1]``, shape ``(..., 2)`` to ``(..., 2 * num_pos_feats)``."""
        projected = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        projected = 2 * math.pi * projected
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an ``(h, w)`` grid: ``(C, h, w)``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Encode pixel ``(x, y)`` coordinates of an ``(H, W)`` frame."""
        scale = coords.new_tensor([1.0 / image_size[1], 1.0 / image_size[0]])
        return self._encode(coords.to(torch.float32) * scale)


def _batch_size(
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    masks: torch.Tensor | None,
) -> int:
    if points is not None:
        return points[0].shape[0]
    if boxes is not None:
        return boxes.shape[0]
    if masks is not None:
        return masks.shape[0]
    return 1
