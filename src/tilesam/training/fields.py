"""Fine-tuning on whole embedded images: the decoder learns in the conditions of inference.

With the encoder frozen (``tilesam train --freeze-encoder``), each real training image is
embedded once, whole, as :meth:`tilesam.SamModel.embed` embeds it for ``tilesam evaluate``
and the napari plugin. Every step then decodes windows of those embeddings around
prompted objects: the window the model decodes at inference (the largest of
``Sam.decoder_windows``, or the whole grid), centred on the prompt as
:meth:`tilesam.SamModel.predict` centres it, with the positional encoding and prompt
coordinates of the window's true place in the input, and the object's real neighbours
around it. Crops encoded alone, the path for training the encoder, see neither: fine-tuned
on crops, the decoder got better on crops and worse on whole images
(``docs/benchmarks.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from tilesam.model import SamModel
from tilesam.models.sam import Sam
from tilesam.preprocess import resized_shape
from tilesam.prompt_simulation import box_from_mask, center_point, random_point
from tilesam.training.examples import resize_labels
from tilesam.training.interactive import MIN_OBJECT_PIXELS, Prompts


@dataclass(frozen=True)
class EmbeddedField:
    """One training image, embedded whole.

    ``features`` ``(C, h, w)`` (float16: a field costs 1 MB for ``tiny``); ``labels`` the
    instance labels in the model's input frame ``(S, S)``, resized like the image and
    zero in the padding; ``objects`` the ids of the objects large enough to train on.
    """

    features: torch.Tensor
    labels: np.ndarray
    objects: np.ndarray


@dataclass
class FieldBatch:
    """Windows of fields around ``N`` prompted objects, ready for the decoder.

    ``features`` and ``pe`` ``(N, C, W, W)``; ``targets`` each object's mask on its window
    in input pixels; ``prompts`` in the input frame; ``offsets`` ``(N, 2)`` each window's
    ``(x, y)`` in input pixels (to place corrective clicks).
    """

    features: torch.Tensor
    pe: torch.Tensor
    targets: list[np.ndarray]
    prompts: Prompts
    offsets: np.ndarray


def embed_fields(model: SamModel, items: Sequence, progress: bool = True) -> list[EmbeddedField]:
    """Embed each item's ``image`` whole and bring its ``labels`` to the input frame."""
    size = model.image_size
    fields = []
    for item in tqdm(items, disable=not progress, desc="embed images", unit="image"):
        labels = np.asarray(item.labels)
        with torch.no_grad():
            features = model.embed(item.image).features[0].detach().cpu().half()
        frame = np.zeros((size, size), dtype=labels.dtype)
        h, w = resized_shape(labels.shape, size)
        frame[:h, :w] = resize_labels(labels, (h, w))
        ids, counts = np.unique(frame[frame > 0], return_counts=True)
        objects = ids[counts >= MIN_OBJECT_PIXELS]
        if len(objects):
            fields.append(EmbeddedField(features, frame, objects))
    return fields


def field_batch(
    sam: Sam,
    fields: Sequence[EmbeddedField],
    n: int,
    rng: np.random.Generator,
    *,
    use_boxes: bool,
) -> FieldBatch:
    """``n`` random objects of random fields, each prompted by its box (with 10 % jitter),
    its centre point or a random point inside it, on the window centred on that prompt."""
    grid = sam.prompt_encoder.image_embedding_size[0]
    side = max((s for s in sam.decoder_windows if s < grid), default=grid)
    patch = sam.image_size // grid
    pe_all = sam.prompt_encoder.get_dense_pe()[0].detach()
    features, pe, targets, offsets, marks = [], [], [], [], []
    for _ in range(n):
        field = fields[int(rng.integers(len(fields)))]
        obj = field.labels == field.objects[int(rng.integers(len(field.objects)))]
        if use_boxes:
            y0, x0, y1, x1 = box_from_mask(obj, jitter=0.1, rng=rng)
            marks.append([x0, y0, x1, y1])
            centre = ((y0 + y1) / 2, (x0 + x1) / 2)
        else:
            centre = center_point(obj) if rng.random() < 0.5 else random_point(obj, rng)
            marks.append([centre[1], centre[0]])
        ty, tx = (int(np.clip(round(c / patch - side / 2), 0, grid - side)) for c in centre)
        window = (slice(ty, ty + side), slice(tx, tx + side))
        features.append(field.features[(slice(None), *window)].float())
        pe.append(pe_all[(slice(None), *window)])
        pixels = tuple(slice(s.start * patch, s.stop * patch) for s in window)
        targets.append(obj[pixels])
        offsets.append([tx * patch, ty * patch])
    xy = np.array(marks, dtype=np.float32)
    if use_boxes:
        prompts = Prompts(None, None, torch.from_numpy(xy))
    else:
        prompts = Prompts(None, None, None).add_points(xy, np.ones(n))
    return FieldBatch(
        torch.stack(features), torch.stack(pe), targets, prompts, np.array(offsets, np.float32)
    )
