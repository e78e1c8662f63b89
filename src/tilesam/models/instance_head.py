"""The instance head: foreground and two distance maps predicted from an image embedding.

A small convolutional decoder on the (frozen) encoder's output, after micro-sam's automatic
instance segmentation: from ``(C, h, w)`` features it predicts, at four model-input pixels
per cell (SAM's low-resolution mask grid, 256 x 256 for a 1024 input),

0. the **foreground** probability;
1. the **centre distance**: 0 at an object's centre, 1 at its farthest pixel (and outside);
2. the **boundary distance**: 0 deep inside an object, 1 at its boundary (and outside).

All three through a sigmoid. Seeds (small centre and boundary distances) and a watershed on
the boundary distance then separate touching objects (:mod:`tilesam.automatic.instance`).

A head belongs to one encoder: it is saved with the weights hash of the model whose
embeddings it learnt, and refused for another. The bundled ``tiny`` ships with one
(``weights/tiny_instance_head.pt``, trained by ``tilesam train --instance-head``, see
``docs/automatic.md``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tilesam.decode.embedding import ImageEmbedding
from tilesam.errors import TileSAMError
from tilesam.models.registry import MODELS
from tilesam.models.weights import bundled_path, check_bundled

#: what a head file says it is (written by :func:`tilesam.training.instance_head.save_head`)
HEAD_FORMAT = "tilesam-instance-head"
#: the bundled head of each bundled model (in ``src/tilesam/weights``) and its registered
#: sha256, checked on load like the model's weights; the recipe: ``docs/automatic.md``
BUNDLED_HEADS = {
    "tiny": (
        "tiny_instance_head.pt",
        "sha256:7fb6207a6d1e9d8bd36aea42e3528ffafdad6f76b40dc8e6d2c474af323c5d7a",
    )
}
#: model-input pixels per feature cell of SAM-family encoders
PATCH = 16


class InstanceHead(nn.Module):
    """Foreground, centre-distance and boundary-distance logits from encoder features.

    Examples
    --------
    >>> head = InstanceHead(in_chans=128)
    >>> head(torch.zeros(1, 128, 64, 64)).shape  # four cells per feature cell, per side
    torch.Size([1, 3, 256, 256])
    """

    def __init__(self, in_chans: int, width: int = 64) -> None:
        super().__init__()
        self.in_chans, self.width = in_chans, width
        self.body = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.GroupNorm(8, width),
            nn.GELU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, width // 2, 2, stride=2),
            nn.GroupNorm(8, width // 2),
            nn.GELU(),
            nn.ConvTranspose2d(width // 2, width // 4, 2, stride=2),
            nn.GELU(),
            nn.Conv2d(width // 4, width // 4, 3, padding=1),
            nn.GELU(),
        )
        self.out = nn.Conv2d(width // 4, 3, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.body(features)))


def head_maps(head: InstanceHead, emb: ImageEmbedding) -> np.ndarray:
    """The three maps of `emb`'s image, ``(3, H, W)`` float32 in 0..1 at its original size
    (the padding of the model input cut off, then resized bilinearly).

    >>> from tilesam.samples import load_sample
    >>> from tilesam.models.loading import load_model
    >>> emb = load_model().embed(load_sample("nuclei")[0])
    >>> head_maps(InstanceHead(128), emb).shape
    (3, 256, 256)
    """
    features = torch.as_tensor(np.asarray(emb.features), dtype=torch.float32)
    param = next(head.parameters())
    with torch.no_grad():
        maps = torch.sigmoid(head(features.to(param.device)))
    cell = features.shape[-1] * PATCH / maps.shape[-1]  # model-input pixels per map cell
    h, w = (max(1, round(side / cell)) for side in emb.input_size)
    maps = F.interpolate(maps[:, :, :h, :w], emb.original_size, mode="bilinear")
    return maps[0].float().cpu().numpy()


def load_head(path: str | os.PathLike[str] | None, model: Any) -> InstanceHead:
    """The instance head at `path` (None: the one bundled with `model`), checked to have
    been trained on `model`'s embeddings; on the model's device, in eval mode."""
    if path is None:
        path = bundled_head(model)
    if path is None:
        raise TileSAMError(
            f"Model {model.name!r} has no instance head: train one on your annotated images "
            f"with `tilesam train --instance-head --base {model.name} --images IMAGES "
            "--out RUN` and give it as instance_head='RUN/instance_head.pt' (command line: "
            "--instance-head), or use mode='grid', which needs none."
        )
    record = _read(Path(path))
    if record["weights_hash"] != model.weights_hash:
        raise TileSAMError(
            f"The instance head {path} was trained on the embeddings of model "
            f"{record['model_name']!r} (weights sha256 {str(record['weights_hash'])[:12]}...), "
            f"not of the model in use, {model.name!r}: use a head trained for this model "
            f"(tilesam train --instance-head --base {model.name} ...)."
        )
    head = InstanceHead(record["in_chans"], record["width"])
    head.load_state_dict(record["state_dict"])
    return head.to(model.device).eval()


def bundled_head(model: Any) -> Path | None:
    """The instance head shipped for `model` (a bundled model with its shipped weights),
    checked against its registered hash; None if there is none."""
    entry = MODELS.get(model.name) if model.name in BUNDLED_HEADS else None
    weights = bundled_path(entry) if entry is not None else None
    if weights is None or f"sha256:{model.weights_hash}" != entry.known_hash:
        return None  # not the shipped weights: a bundled head would not fit them
    filename, known_hash = BUNDLED_HEADS[model.name]
    path = weights.with_name(filename)
    if not path.is_file():
        return None
    check_bundled(path, known_hash, f"instance head of {model.name!r}")
    return path


def _read(path: Path) -> dict:
    if not path.is_file():
        raise TileSAMError(
            f"Instance head {path} does not exist: give the file that "
            "`tilesam train --instance-head` wrote (RUN/instance_head.pt)."
        )
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: one clear message
        raise TileSAMError(f"Cannot read instance head {path}: {exc}.") from None
    if not isinstance(record, dict) or record.get("format") != HEAD_FORMAT:
        raise TileSAMError(
            f"{path} is not a TileSAM instance head (written by tilesam train --instance-head)."
        )
    return record
