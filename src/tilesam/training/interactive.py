"""One SAM-style interactive training step with simulated prompts.

The first prompt of each object is a random point inside it (three candidate masks, the
best one trained) or its jittered box; then corrective clicks are sampled from the error
region of the previous prediction, whose low-resolution logits are fed back as mask input.

Crops smaller than the model input are placed at a random offset of the input frame: the
prompt coordinates and the dense positional encoding are those of that window, so a crop
looks to the decoder exactly like the same region of a full input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tilesam.evaluate.simulated_prompts import box_from_mask, corrective_click, random_point
from tilesam.models.sam import Sam
from tilesam.training.examples import Example
from tilesam.training.losses import mask_iou, sam_loss

# The smallest object (in pixels of the model's input) that training prompts: smaller ones are
# never picked as targets. Part of the recipe the bundled ``tiny`` was trained with, so kept at
# 16; not the evaluation's threshold (tilesam.evaluate.scoring.MIN_OBJECT_PIXELS), which
# decides which annotated objects are scored.
MIN_TRAINING_OBJECT_PIXELS = 16


@dataclass
class Prompts:
    """Prompts of N objects in SAM's frame: points ``(N, k, 2)`` as ``(x, y)``, labels, boxes."""

    points: torch.Tensor | None
    labels: torch.Tensor | None
    boxes: torch.Tensor | None

    def add_points(self, xy: np.ndarray, labels: np.ndarray) -> Prompts:
        new_xy = torch.as_tensor(xy, dtype=torch.float32)[:, None]
        new_labels = torch.as_tensor(labels, dtype=torch.int64)[:, None]
        if self.points is None:
            return Prompts(new_xy, new_labels, self.boxes)
        return Prompts(
            torch.cat([self.points, new_xy], 1), torch.cat([self.labels, new_labels], 1), self.boxes
        )


def pick_objects(example: Example, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``k`` target masks, each a random object of a random nesting level."""
    targets = []
    for _ in range(k):
        level = example.levels[int(rng.integers(len(example.levels)))]
        ids, counts = np.unique(level[level > 0], return_counts=True)
        ids = ids[counts >= MIN_TRAINING_OBJECT_PIXELS]
        if len(ids):
            targets.append(level == ids[int(rng.integers(len(ids)))])
    return targets


def first_prompts(
    targets: list[np.ndarray], offset_px: int, use_boxes: bool, rng: np.random.Generator
) -> Prompts:
    """A random positive point in each target, or its box with 10 % jitter."""
    if use_boxes:
        boxes = [box_from_mask(t, jitter=0.1, rng=rng) for t in targets]
        xyxy = np.array([[x0, y0, x1, y1] for y0, x0, y1, x1 in boxes], dtype=np.float32)
        return Prompts(None, None, torch.from_numpy(xyxy + offset_px))
    yx = np.array([random_point(t, rng) for t in targets], dtype=np.float32)
    return Prompts(None, None, None).add_points(yx[:, ::-1] + offset_px, np.ones(len(targets)))


def decode(
    sam: Sam,
    features: torch.Tensor,
    pe: torch.Tensor,
    prompts: Prompts,
    mask_input: torch.Tensor | None,
    multimask: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder for a window of the input frame: ``features`` ``(N, C, h, w)``."""
    points = None if prompts.points is None else (prompts.points, prompts.labels)
    return sam.decode(
        features,
        points=points,
        boxes=prompts.boxes,
        mask_input=mask_input,
        multimask_output=multimask,
        image_pe=pe,
    )


def interactive_loss(
    sam: Sam,
    batch: list[Example],
    rng: np.random.Generator,
    *,
    objects_per_image: int,
    iterations: int,
    encoder_grad: bool = True,
    loss: str = "focal",
    mosaic: bool = False,
    loss_margin: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one step over a batch of equal-sized crops; also returns the first-prompt IoU.

    With ``mosaic`` the crops' features are laid out side by side as one field (see
    :func:`mosaic_field`) and each target lies in its own crop's part of it.
    """
    device = sam.pixel_mean.device
    pixels = torch.from_numpy(np.stack([e.pixels for e in batch])).permute(0, 3, 1, 2).to(device)
    with torch.set_grad_enabled(encoder_grad and torch.is_grad_enabled()):
        features = sam.image_encoder((pixels - sam.pixel_mean) / sam.pixel_std)
    owners, targets = _targets(batch, objects_per_image, rng)
    if not targets:
        return features.sum() * 0.0, {"iou": float("nan")}
    if mosaic and len(batch) % 2 == 0:
        features, targets = mosaic_field(features, owners, targets)
        owners = [0] * len(targets)
    feats = features[torch.as_tensor(owners, device=device)]
    offset_tokens, pe = _window_pe(sam, feats.shape[-2:], rng)
    offset_px = offset_tokens * (sam.image_size // sam.prompt_encoder.image_embedding_size[0])
    prompts = first_prompts(targets, offset_px, use_boxes=bool(rng.random() < 0.4), rng=rng)
    return prompted_loss(
        sam,
        feats,
        pe,
        targets,
        prompts,
        offset_px,
        rng,
        iterations=iterations,
        loss=loss,
        loss_margin=loss_margin,
    )


def prompted_loss(
    sam: Sam,
    features: torch.Tensor,
    pe: torch.Tensor,
    targets: list[np.ndarray],
    prompts: Prompts,
    offset_px: float | np.ndarray,
    rng: np.random.Generator,
    *,
    iterations: int,
    loss: str = "focal",
    loss_margin: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the first prompts, then of ``iterations`` corrective clicks.

    ``features`` and ``pe`` ``(N, C, h, w)`` (``pe`` may be shared: ``(1, C, h, w)``) hold
    each target's window; ``targets`` its mask in the window's input pixels; ``offset_px``
    the window's place in the input frame, one number or ``(N, 2)`` ``(x, y)``.
    """
    device = features.device
    # Losses and corrective clicks work at half the crop resolution: a quarter of the cost,
    # and still twice the resolution of the decoder's logits.
    targets = [_half(t) for t in targets]
    target = torch.from_numpy(np.stack(targets)).float()[:, None].to(device)
    near = None if loss_margin is None else _near(targets, loss_margin).to(device)
    prompts = _to(prompts, device)
    logits, iou = decode(sam, features, pe, prompts, None, multimask=prompts.boxes is None)
    total, best, chosen, first_iou = _scored(logits, iou, target, loss, near)
    for _ in range(iterations):
        prompts = _corrected(prompts, chosen, targets, offset_px, rng, device)
        mask_input = logits[torch.arange(len(best)), best][:, None].detach()
        logits, iou = decode(sam, features, pe, prompts, mask_input, multimask=False)
        step_loss, best, chosen, _ = _scored(logits, iou, target, loss, near)
        total = total + step_loss
    return total / (iterations + 1), {"iou": first_iou}


def mosaic_field(
    features: torch.Tensor, owners: list[int], targets: list[np.ndarray]
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Lay ``(B, C, h, w)`` crop features out as one ``(1, C, B/2 * h, 2 * w)`` field.

    Crops are smaller than the model input, so without this the decoder never sees an
    object-like region farther from the prompt than a crop is wide, and on a full input it
    happily adds every look-alike object of the image to the mask. In a mosaic the other
    crops' objects are such regions, and the targets (padded to the field) exclude them.
    """
    rows = features.shape[0] // 2
    field = torch.cat(
        [torch.cat([features[2 * r], features[2 * r + 1]], -1) for r in range(rows)], -2
    )
    crop_h, crop_w = targets[0].shape
    placed = []
    for owner, target in zip(owners, targets):
        full = np.zeros((rows * crop_h, 2 * crop_w), dtype=bool)
        row, col = divmod(owner, 2)
        full[row * crop_h : (row + 1) * crop_h, col * crop_w : (col + 1) * crop_w] = target
        placed.append(full)
    return field[None], placed


def _half(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    cover = mask[: h - h % 2, : w - w % 2].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    half = cover >= 0.5
    return half if half.any() else cover > 0  # thin objects must not vanish


def _targets(
    batch: list[Example], k: int, rng: np.random.Generator
) -> tuple[list[int], list[np.ndarray]]:
    owners, targets = [], []
    for index, example in enumerate(batch):
        picked = pick_objects(example, k, rng)
        owners += [index] * len(picked)
        targets += picked
    return owners, targets


def _window_pe(sam: Sam, hw: tuple[int, int], rng: np.random.Generator) -> tuple[int, torch.Tensor]:
    """A random window of the full input's positional encoding, and its offset in tokens."""
    grid = sam.prompt_encoder.image_embedding_size[0]
    h, w = hw
    limit = max(grid - max(h, w), 0)
    offset = int(rng.integers(limit + 1))
    pe = sam.prompt_encoder.get_dense_pe()[..., offset : offset + h, offset : offset + w]
    return offset, pe


def _near(targets: list[np.ndarray], margin: float) -> torch.Tensor:
    """``(N, 1, H, W)``: each target's box grown by `margin` of its size on every side."""
    near = np.zeros((len(targets), 1, *targets[0].shape), dtype=bool)
    for i, t in enumerate(targets):
        ys, xs = np.nonzero(t)
        grow_y = int(np.ceil(margin * (ys.max() - ys.min() + 1)))
        grow_x = int(np.ceil(margin * (xs.max() - xs.min() + 1)))
        near[
            i,
            0,
            max(ys.min() - grow_y, 0) : ys.max() + 1 + grow_y,
            max(xs.min() - grow_x, 0) : xs.max() + 1 + grow_x,
        ] = True
    return torch.from_numpy(near)


def _scored(
    logits: torch.Tensor,
    iou: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    near: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    full = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if near is not None:
        # Far from the target, predictions cost nothing: TileSAM keeps only the prompted
        # part of a mask, so a far look-alike never reaches the user.
        full = torch.where(near, full, torch.full_like(full, -20.0))
    loss, best = sam_loss(full, iou, target, kind)
    chosen = full[torch.arange(len(best)), best]
    first_iou = float(mask_iou(chosen[:, None], target).mean())
    return loss, best, chosen, first_iou


def _corrected(
    prompts: Prompts,
    chosen: torch.Tensor,
    targets: list[np.ndarray],
    offset_px: float | np.ndarray,
    rng: np.random.Generator,
    device: torch.device,
) -> Prompts:
    predicted = (chosen.detach() > 0).cpu().numpy()
    # A perfect mask gets one more positive click inside the object, as a user might.
    clicks = [
        corrective_click(p, t, rng=rng) or (*random_point(t, rng), 1)
        for p, t in zip(predicted, targets)
    ]
    # Clicks are found at half resolution: back to crop pixels, at the centre of the 2x2 cell.
    xy = np.array([[x, y] for y, x, _ in clicks], dtype=np.float32) * 2 + 0.5 + offset_px
    labels = np.array([label for _, _, label in clicks])
    return _to(prompts.add_points(xy, labels), device)


def _to(prompts: Prompts, device: torch.device) -> Prompts:
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return Prompts(move(prompts.points), move(prompts.labels), move(prompts.boxes))
