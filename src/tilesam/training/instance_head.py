"""Training an instance head on a frozen model's embeddings (``tilesam train --instance-head``).

Each image is embedded once, whole, as inference embeds it (:func:`.fields.embed_fields`);
its labels give the three targets of :class:`tilesam.models.instance_head.InstanceHead` on
the head's grid (four model-input pixels a cell). Only the head learns: the model, and so
its cached embeddings and the interactive path, are untouched.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from skimage.segmentation import relabel_sequential
from torch.nn import functional as F
from tqdm.auto import tqdm

from tilesam.errors import TileSAMError
from tilesam.io.atomic import atomic_output, make_folder
from tilesam.models.instance_head import HEAD_FORMAT, InstanceHead
from tilesam.models.sam_model import SamModel
from tilesam.training.examples import resize_labels
from tilesam.training.fields import embed_fields
from tilesam.training.losses import dice_loss

#: what ``tilesam train --instance-head`` writes into its run folder
HEAD_FILE = "instance_head.pt"
#: side of the training crops, in feature cells (32: 512 model-input pixels)
CROP = 32


def instance_targets(labels: np.ndarray) -> np.ndarray:
    """Foreground, centre distance and boundary distance of instance `labels`,
    ``(3, H, W)`` float32 (see :mod:`tilesam.models.instance_head`).

    >>> labels = np.zeros((7, 7), dtype=int)
    >>> labels[1:6, 1:6] = 1
    >>> fg, centre, boundary = instance_targets(labels)
    >>> [float(v) for v in (fg[3, 3], centre[3, 3], boundary[3, 3], boundary[1, 3], centre[0, 0])]
    [1.0, 0.0, 0.0, 1.0, 1.0]
    """
    labels = relabel_sequential(labels)[0]  # find_objects lists every id up to the largest
    targets = np.ones((3, *labels.shape), dtype=np.float32)
    targets[0] = labels > 0
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        obj = labels[grown] == index
        inside = ndimage.distance_transform_edt(obj)
        top = inside.max()
        yy, xx = np.nonzero(obj)
        off = np.hypot(yy - yy.mean(), xx - xx.mean())
        targets[1][grown][obj] = off / off.max() if off.max() > 0 else 0.0
        deep = 0.0 if top <= 1 else (inside[obj] - 1) / (top - 1)
        targets[2][grown][obj] = 1.0 - deep
    return targets


def head_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Foreground: binary cross-entropy plus dice; distances: squared error inside objects
    (outside them the watershed never reads the distances)."""
    fg = targets[:, 0]
    # one dice over the whole batch: crops without objects count, as background
    dice = dice_loss(logits[:, 0].reshape(1, 1, -1), fg.reshape(1, 1, -1))[0, 0]
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], fg) + dice
    inside = fg.sum().clamp(min=1)
    for k in (1, 2):
        loss = loss + ((torch.sigmoid(logits[:, k]) - targets[:, k]) ** 2 * fg).sum() / inside
    return loss


def train_instance_head(
    model: SamModel,
    items: Sequence,
    out_dir: str | Path,
    *,
    steps: int = 2000,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    max_minutes: float | None = None,
    progress: bool = True,
) -> Path:
    """Train an instance head for `model` on `items` (each with ``image`` and ``labels``)
    and write it to ``out_dir/instance_head.pt``; the model stays frozen."""
    model.sam.eval()
    fields = embed_fields(model, items, progress=progress)
    if not fields:
        raise TileSAMError("No labelled object in the training images: nothing to train on.")
    features = torch.stack([f.features.float() for f in fields])
    grid = 4 * features.shape[-1]  # the head's output side
    targets = torch.from_numpy(
        np.stack([instance_targets(resize_labels(f.labels, (grid, grid))) for f in fields])
    )
    torch.manual_seed(seed)
    head = InstanceHead(features.shape[1]).to(model.device)
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))
    )
    rng = np.random.default_rng(seed)
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    bar = tqdm(range(steps), disable=not progress, desc="instance head", unit="step")
    done = 0
    for done in bar:  # noqa: B007 (the count of steps run is saved with the head)
        x, y = _batch(features, targets, batch_size, rng)
        loss = head_loss(head(x.to(model.device)), y.to(model.device))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if deadline is not None and time.monotonic() > deadline:
            break
    info = {"images": len(fields), "steps": done + 1, "loss": float(loss.item()), "seed": seed}
    return save_head(Path(out_dir) / HEAD_FILE, head.cpu(), model, **info)


def save_head(path: str | os.PathLike[str], head: InstanceHead, model: Any, **info: Any) -> Path:
    """Write `head` with the identity of the `model` whose embeddings it learnt."""
    path = Path(path)
    make_folder(path.parent)
    record = {
        "format": HEAD_FORMAT,
        "version": 1,
        "in_chans": head.in_chans,
        "width": head.width,
        "model_name": model.name,
        "weights_hash": model.weights_hash,
        "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
        "info": info,
    }
    with atomic_output(path) as partial:  # complete or not at all
        torch.save(record, partial)
    return path


def _batch(
    features: torch.Tensor, targets: torch.Tensor, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` crops of :data:`CROP` feature cells (and their targets) from random images,
    mirrored at random. Crops cost a quarter of whole inputs on a CPU, and the head's view
    (two 3 x 3 convolutions) is far smaller than a crop.

    Objects look alike mirrored, and a convolutional encoder's features nearly mirror with
    them, so features and targets are flipped together."""
    side = features.shape[-1]
    up = targets.shape[-1] // side
    xs, ys = [], []
    for index in rng.choice(len(features), size=size):
        y0, x0 = rng.integers(0, side - CROP + 1, size=2)
        x = features[index, :, y0 : y0 + CROP, x0 : x0 + CROP]
        y = targets[index, :, up * y0 : up * (y0 + CROP), up * x0 : up * (x0 + CROP)]
        dims = [d for d in (-1, -2) if rng.random() < 0.5]
        xs.append(x.flip(dims) if dims else x)
        ys.append(y.flip(dims) if dims else y)
    return torch.stack(xs), torch.stack(ys)
