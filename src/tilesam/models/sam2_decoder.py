"""SAM 2's mask decoder and its prompt tokens.

SAM 2 keeps SAM's prompt encoder and two-way transformer (the transformer's MLP keys are
``mlp.layers.0`` / ``mlp.layers.1`` instead of ``mlp.lin1`` / ``mlp.lin2``) and changes the
decoder around them: an object-score token and head, sigmoid IoU, the stride-4 and stride-8
image features added while upscaling (projected by ``conv_s0`` / ``conv_s1``, applied once per
image), and, for a single mask, a fall-back to the best of the three candidates when the
single-mask output is unstable. Boxes enter as two corner points before the clicks.
"""

from __future__ import annotations

from typing import NoReturn

import torch
from torch import nn

from tilesam.models.mask_decoder import MLP, MaskDecoder
from tilesam.models.prompt_encoder import PromptEncoder
from tilesam.models.transformer import ImageTokens, TwoWayTransformer


def sam2_transformer(depth: int, dim: int, heads: int, mlp_dim: int) -> TwoWayTransformer:
    """SAM's :class:`TwoWayTransformer` with SAM 2's MLP layout (same function, other keys)."""
    transformer = TwoWayTransformer(
        depth=depth, embedding_dim=dim, num_heads=heads, mlp_dim=mlp_dim
    )
    for layer in transformer.layers:
        layer.mlp = MLP(dim, mlp_dim, dim, num_layers=2)  # ReLU between, as SAM's MLPBlock
    return transformer


def sparse_prompt(
    encoder: PromptEncoder,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
) -> torch.Tensor:
    """SAM 2's sparse prompt tokens ``(B, N, C)``: box corners first, then the points, then
    one padding token whenever there is a point or a box.

    SAM 2 feeds a box as two labelled points, so unlike SAM it is padded like points are; the
    corners' embeddings are SAM's box embeddings.
    """
    parts = []
    if boxes is not None:
        parts.append(encoder._embed_boxes(boxes))
    if points is not None:
        parts.append(encoder._embed_points(*points, pad=False))
    if not parts:
        device = encoder.no_mask_embed.weight.device
        return torch.empty(1, 0, encoder.embed_dim, device=device)
    batch = parts[0].shape[0]
    parts.append(encoder.not_a_point_embed.weight.expand(batch, 1, -1))
    return torch.cat(parts, dim=1)


class Sam2MaskDecoder(MaskDecoder):
    """SAM's :class:`MaskDecoder` with SAM 2's object score, high-resolution features, sigmoid
    IoU and stability-based choice of a single mask.

    Parameters
    ----------
    transformer_dim, transformer, iou_head_hidden_dim
        As for :class:`MaskDecoder` (build the transformer with :func:`sam2_transformer`).
    stability_delta, stability_thresh
        A single mask is kept when the areas above ``+delta`` and ``-delta`` agree to at
        least ``thresh``; otherwise the best of the three candidates replaces it (the
        official predictor's setting: 0.05 and 0.98).
    """

    def __init__(
        self,
        *,
        transformer_dim: int = 256,
        transformer: TwoWayTransformer,
        iou_head_hidden_dim: int = 256,
        stability_delta: float = 0.05,
        stability_thresh: float = 0.98,
    ) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, num_layers=3)
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh

    def forward(
        self,
        image: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Low-res logits ``(B, M, 4h, 4w)``, IoU ``(B, M)`` and object-score logits ``(B, 1)``.

        ``image`` is ``(1, C, h, w)`` features (which get the dense prompt) or
        :class:`ImageTokens` that already hold the no-mask dense prompt; ``high_res`` the
        projected stride-4 and stride-8 features ``(feat_s0, feat_s1)``.
        ``M`` is 3 with ``multimask_output``, else 1.
        """
        logits, iou, object_score, _ = self.decode_with_tokens(
            image, image_pe, sparse, dense, high_res, multimask_output
        )
        return logits, iou, object_score

    def decode_with_tokens(
        self,
        image: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward`, and the transformer's output for the mask tokens ``(B, 4, C)`` (all
        four, single-mask token first): the video memory turns one into the object pointer."""
        batch = sparse.shape[0]
        output = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight]
        )
        tokens = torch.cat([output.expand(batch, -1, -1), sparse], dim=1)
        if not isinstance(image, ImageTokens):
            src = image.expand(batch, -1, -1, -1) + dense
            image = self.transformer.image_tokens(src, image_pe, precompute=False)
        n_out = 2 + self.num_mask_tokens
        hs, src = self.transformer(image, image_pe, tokens, outputs=n_out)
        hyper_in = torch.stack(
            [mlp(hs[:, 2 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        iou = torch.sigmoid(self.iou_prediction_head(hs[:, 1]))
        object_score = self.pred_obj_score_head(hs[:, 0])
        logits = self.upscale_high_res(src, hyper_in, high_res, image.size)
        logits, iou = self.select(logits, iou, multimask_output)
        return logits, iou, object_score, hs[:, 2 : 2 + self.num_mask_tokens]

    def decode_tokens(self, *args: object, **kwargs: object) -> NoReturn:
        """SAM's decoding without high-resolution features: not SAM 2's function."""
        raise TypeError("SAM 2's decoder needs the high-resolution features: call the module")

    upscale_masks = decode_tokens

    def upscale_high_res(
        self,
        tokens: torch.Tensor,
        hyper_in: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        hw: tuple[int, int],
    ) -> torch.Tensor:
        """Upscale the transformer's image tokens ``(B, h*w, C)`` twice, adding the stride-8
        features after the first step and the stride-4 ones after the second, then take the
        product with each mask's hypernetwork weights: ``(B, M, 4h, 4w)`` logits."""
        up1, norm, act1, up2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        b = tokens.shape[0]
        x = tokens.transpose(1, 2).reshape(b, -1, *hw)
        x = act1(norm(up1(x) + feat_s1))
        x = act2(up2(x) + feat_s0)
        return (hyper_in @ x.flatten(2)).view(b, -1, 4 * hw[0], 4 * hw[1])

    def select(
        self, logits: torch.Tensor, iou: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The three candidates, or the single mask unless it is unstable (then the best
        candidate by IoU), as the official predictor chooses at inference."""
        if multimask_output:
            return logits[:, 1:], iou[:, 1:]
        single = logits[:, :1].flatten(-2)
        inner = (single > self.stability_delta).sum(-1).float()
        outer = (single > -self.stability_delta).sum(-1).float()
        stable = torch.where(outer > 0, inner / outer.clamp(min=1), 1.0) >= self.stability_thresh
        rows = torch.arange(logits.shape[0], device=logits.device)
        best = iou[:, 1:].argmax(dim=-1) + 1
        logits = torch.where(stable[..., None, None], logits[:, :1], logits[rows, best][:, None])
        iou = torch.where(stable, iou[:, :1], iou[rows, best][:, None])
        return logits, iou
