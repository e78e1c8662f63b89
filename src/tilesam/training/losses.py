"""SAM's training losses: focal + dice on masks (minimum over candidates), MSE on IoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0  # SAM's 20:1 focal:dice ratio


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Per-mask sigmoid focal loss, averaged over pixels: ``(N, M)``."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * ce * (1 - p_t) ** gamma).flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-mask soft dice loss: ``(N, M)``."""
    prob = torch.sigmoid(logits).flatten(2)
    target = target.flatten(2)
    overlap = (prob * target).sum(-1)
    return 1 - (2 * overlap + eps) / (prob.sum(-1) + target.sum(-1) + eps)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded masks with the target: ``(N, M)``."""
    pred = (logits > 0).flatten(2).float()
    target = target.flatten(2)
    inter = (pred * target).sum(-1)
    union = pred.sum(-1) + target.sum(-1) - inter
    return inter / union.clamp(min=1.0)


def pixel_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-mask pixel loss: SAM's ``"focal"`` (20 focal : 1 dice), or ``"bce"`` (BCE + dice).

    From scratch, focal loss first drives every pixel to background and takes long to
    recover; BCE + dice leaves that regime within a few dozen steps, so the ``tiny``
    recipe uses it.
    """
    if kind == "bce":
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return bce.flatten(2).mean(-1) + dice_loss(logits, target)
    return FOCAL_WEIGHT * focal_loss(logits, target) + dice_loss(logits, target)


def sam_loss(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, kind: str = "focal"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of ``(N, M, H, W)`` mask logits against ``(N, 1, H, W)`` targets.

    Only the best of the ``M`` candidates is penalised for its mask (so the candidates can
    specialise on nested answers); the IoU head learns every candidate's true IoU.
    Returns the scalar loss and the index of the best candidate per prompt.
    """
    target = target.expand_as(logits)
    per_mask = pixel_loss(logits, target, kind)
    best = per_mask.argmin(dim=1)
    mask_term = per_mask.gather(1, best[:, None]).mean()
    iou_term = F.mse_loss(iou_pred, mask_iou(logits.detach(), target))
    return mask_term + iou_term, best
