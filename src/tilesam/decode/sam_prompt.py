"""The models' edge: a :class:`~tilesam.decode.prompt.Prompt` as SAM's decoders take it.

SAM's prompt encoder takes points as ``(x, y)`` and boxes as ``(x0, y0, x1, y1)`` in pixels
of the resized model input. This module is the one place in TileSAM that converts to that
frame; every decoder (:class:`tilesam.SamModel` in torch,
:class:`tilesam.decode.numpy_predictor.NumpyPredictor` in NumPy) receives a :class:`SamPrompt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tilesam.decode.prompt import Prompt

if TYPE_CHECKING:
    from tilesam.decode.embedding import ImageEmbedding


@dataclass(frozen=True)
class SamPrompt:
    """A prompt in the model-input frame: points ``(N, 2)`` as ``(x, y)`` with labels 1 / 0,
    a box ``(x0, y0, x1, y1)``, a mask input ``(4h, 4w)`` (None where absent)."""

    coords: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    mask: np.ndarray | None
    multimask: bool


def to_sam_prompt(
    prompt: Prompt,
    embedding: ImageEmbedding,
    multimask: bool = True,
    mask: np.ndarray | None = None,
) -> SamPrompt:
    """`prompt`, in pixels of the image `embedding` was made from, in the model input's frame.

    Examples
    --------
    >>> from tilesam.decode.embedding import ImageEmbedding
    >>> emb = ImageEmbedding(None, original_size=(100, 200), input_size=(512, 1024))
    >>> sam = to_sam_prompt(Prompt.make([(10, 20)], box=(0, 0, 50, 100)), emb)
    >>> sam.coords.astype(float).round(2).tolist(), sam.box.tolist()  # (x, y), 5.12 times
    ([[102.4, 51.2]], [0.0, 0.0, 512.0, 256.0])
    """
    height, width = embedding.original_size
    scale = np.array(
        [embedding.input_size[1] / width, embedding.input_size[0] / height], dtype=np.float32
    )
    coords = labels = box = None
    if len(prompt.points):
        # In float32 a point a hair inside the last pixel (107.99999999) would land on the edge.
        edge = np.nextafter(np.float32(embedding.original_size), np.float32(0))
        yx = np.minimum(prompt.points.astype(np.float32), edge)
        coords, labels = yx[:, ::-1] * scale, prompt.labels.astype(np.int64)
    if prompt.box is not None:
        y0, x0, y1, x1 = prompt.box
        box = np.array([x0, y0, x1, y1], dtype=np.float32) * np.tile(scale, 2)
    return SamPrompt(coords, labels, box, mask, multimask)
