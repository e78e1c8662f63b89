"""Fine-tuning on whole embedded images: the decoder learns in the conditions of inference.

With the encoder frozen (``tilesam train --freeze-encoder``), each real training image is
embedded once, whole, as ``tilesam evaluate`` embeds it: scaled as a :class:`tilesam.Session`
opened on its file scales it (an item's ``intensity``,
:class:`~tilesam.evaluate.datasets.LabelledImage`; its own range where it has none), so a
multi-band georaster band by band, as sessions, napari and QGIS see it. Every step then
decodes windows of those embeddings around prompted objects: the window inference ends on
for that prompt and object (see :func:`window_side`), centred on the prompt as
:meth:`tilesam.SamModel.predict` centres it, with the positional encoding and prompt
coordinates of the window's true place in the input, and the object's real neighbours
around it. Crops encoded alone, the path for training the encoder, see neither: fine-tuned
on crops, the decoder got better on crops and worse on whole images
(``docs/benchmarks.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from tilesam.decode.predictor import centred_window, window_sides
from tilesam.evaluate.simulated_prompts import center_point, jitter_box, random_point
from tilesam.models.preprocess import resized_shape
from tilesam.models.sam import Sam
from tilesam.models.sam_model import SamModel
from tilesam.training.examples import resize_labels
from tilesam.training.interactive import MIN_TRAINING_OBJECT_PIXELS, Prompts

#: A box sent with a click is grown by up to this fraction of the object's size per side
#: (propagation grows the previous slice's box by 5 %, and objects change between slices).
BOX_POINT_GROWTH = 0.15


@dataclass(frozen=True)
class EmbeddedField:
    """One training image, embedded whole.

    ``features`` ``(C, h, w)`` (float16: a field costs 1 MB for ``tiny``); ``labels`` the
    instance labels in the model's input frame ``(S, S)``, resized like the image and
    zero in the padding; ``objects`` the ids of the objects large enough to train on and
    ``boxes`` their bounding boxes ``(y0, x0, y1, x1)``, end-exclusive (a step then works
    on each object's box, not on the whole frame).
    """

    features: torch.Tensor
    labels: np.ndarray
    objects: np.ndarray
    boxes: np.ndarray


@dataclass
class FieldBatch:
    """Windows of one side around ``N`` prompted objects, ready for the decoder.

    ``features`` and ``pe`` ``(N, C, W, W)``; ``targets`` each object's mask on its window
    in input pixels; ``prompts`` in the input frame; ``offsets`` ``(N, 2)`` each window's
    ``(x, y)`` in input pixels (to place corrective clicks).
    """

    features: torch.Tensor
    pe: torch.Tensor
    targets: list[np.ndarray]
    prompts: Prompts
    offsets: np.ndarray


class _Window(NamedTuple):
    side: int
    features: torch.Tensor
    pe: torch.Tensor
    target: np.ndarray
    mark: list[float]  # (x, y) of a point, (x0, y0, x1, y1) of a box, or both (box first)
    offset: list[int]  # (x, y) of the window, input pixels


def embed_fields(model: SamModel, items: Sequence, progress: bool = True) -> list[EmbeddedField]:
    """Embed each item's ``image`` whole, with its ``intensity`` where it has one (the range a
    session on its file uses), and bring its ``labels`` to the input frame."""
    size = model.image_size
    fields = []
    for item in tqdm(items, disable=not progress, desc="embed images", unit="image"):
        labels = np.asarray(item.labels)
        with torch.no_grad():
            embedding = model.embed(item.image, intensity=getattr(item, "intensity", None))
        features = embedding.features[0].detach().cpu().half()
        frame = np.zeros((size, size), dtype=labels.dtype)
        h, w = resized_shape(labels.shape, size)
        frame[:h, :w] = resize_labels(labels, (h, w))
        objects, boxes = _objects(frame)
        if len(objects):
            fields.append(EmbeddedField(features, frame, objects, boxes))
    return fields


def _objects(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ids of `labels`' objects large enough to train on, sorted, and their bounding
    boxes ``(y0, x0, y1, x1)``; found on the ids' ranks, so that ids up to 2**32 - 1 cost
    no more than small ones."""
    ids, ranks, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = np.flatnonzero((ids > 0) & (counts >= MIN_TRAINING_OBJECT_PIXELS))
    found = ndimage.find_objects(ranks.reshape(labels.shape) + 1)  # rank 0 is an id too
    boxes = [
        [found[i][0].start, found[i][1].start, found[i][0].stop, found[i][1].stop] for i in keep
    ]
    return ids[keep], np.array(boxes, dtype=np.int64).reshape(-1, 4)


def field_batches(
    sam: Sam,
    fields: Sequence[EmbeddedField],
    n: int,
    rng: np.random.Generator,
    *,
    use_boxes: bool,
    box_point: bool = False,
) -> list[FieldBatch]:
    """``n`` random objects of random fields, each prompted by its box (with 10 % jitter),
    its centre point or a random point inside it, on the window inference decodes it on;
    one batch per window side.

    With `box_point` (and `use_boxes`) each box is also grown by up to `BOX_POINT_GROWTH` of
    its size per side and comes with a click inside the object: the prompt slice-to-slice
    propagation sends (the previous slice's mask's box, grown, and its deepest pixel), and
    what a user sends who adds a click to a box before any correction.
    """
    pe = sam.prompt_encoder.get_dense_pe()[0].detach()
    windows = [_window(sam, pe, fields, rng, use_boxes, box_point) for _ in range(n)]
    sides = sorted({w.side for w in windows})
    return [_stack([w for w in windows if w.side == side], use_boxes) for side in sides]


def _window(
    sam: Sam,
    pe: torch.Tensor,
    fields: Sequence[EmbeddedField],
    rng: np.random.Generator,
    use_boxes: bool,
    box_point: bool = False,
) -> _Window:
    grid = sam.prompt_encoder.image_embedding_size[0]
    patch = sam.image_size // grid
    field = fields[int(rng.integers(len(fields)))]
    index = int(rng.integers(len(field.objects)))
    label, (oy0, ox0, oy1, ox1) = field.objects[index], field.boxes[index]
    obj = field.labels[oy0:oy1, ox0:ox1] == label
    if use_boxes:
        box = (oy0, ox0, oy1, ox1)
        if box_point:
            grow = rng.uniform(0.0, BOX_POINT_GROWTH) * np.array([oy1 - oy0, ox1 - ox0])
            box = (oy0 - grow[0], ox0 - grow[1], oy1 + grow[0], ox1 + grow[1])
        y0, x0, y1, x1 = jitter_box(box, 0.1, field.labels.shape, rng)
        mark = [x0, y0, x1, y1]
        lo, hi = np.array([y0, x0]) / patch, np.array([y1, x1]) / patch
        if box_point:
            y, x = _click(obj, rng)
            mark += [x + ox0, y + oy0]
            # Inference centres its window on all of the prompt: the click may lie outside
            # a box the jitter shrank.
            click = np.array([y + oy0, x + ox0]) / patch
            lo, hi = np.minimum(lo, click), np.maximum(hi, click)
    else:
        y, x = _click(obj, rng)
        mark = [x + ox0, y + oy0]
        lo = hi = np.array([y + oy0, x + ox0]) / patch
    extent = max(oy1 - 1 - oy0, ox1 - 1 - ox0) / patch
    side = window_side(sam, max(extent, *(hi - lo)), box=use_boxes)
    ty, _, tx, _ = centred_window(lo, hi, side, (grid, grid))
    window = (slice(ty, ty + side), slice(tx, tx + side))
    pixels = tuple(slice(w.start * patch, w.stop * patch) for w in window)
    return _Window(
        side,
        field.features[(slice(None), *window)].float(),
        pe[(slice(None), *window)],
        field.labels[pixels] == label,
        mark,
        [tx * patch, ty * patch],
    )


def _click(obj: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """The object's centre (its deepest pixel) or, as often, a random pixel of it."""
    return center_point(obj) if rng.random() < 0.5 else random_point(obj, rng)


def window_side(sam: Sam, extent: float, *, box: bool) -> int:
    """The side of the window, in tokens, that inference ends on for an object `extent`
    tokens wide: the first of :func:`tilesam.decode.predictor.window_sides` that holds it (a mask
    that reaches a window's edge moves on to the next window), else the whole grid."""
    grid = sam.prompt_encoder.image_embedding_size[0]
    return next(iter(window_sides(sam.decoder_windows, grid, extent, box=box)), grid)


def _stack(windows: list[_Window], use_boxes: bool) -> FieldBatch:
    xy = np.array([w.mark for w in windows], dtype=np.float32)
    if use_boxes:
        prompts = Prompts(None, None, torch.from_numpy(xy[:, :4].copy()))
        if xy.shape[1] == 6:  # a click with each box
            prompts = prompts.add_points(xy[:, 4:], np.ones(len(windows)))
    else:
        prompts = Prompts(None, None, None).add_points(xy, np.ones(len(windows)))
    return FieldBatch(
        torch.stack([w.features for w in windows]),
        torch.stack([w.pe for w in windows]),
        [w.target for w in windows],
        prompts,
        np.array([w.offset for w in windows], dtype=np.float32),
    )
