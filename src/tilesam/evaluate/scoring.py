"""Score a promptable model on annotated images with simulated, deterministic prompts.

For every object (an id in the label image) three protocols are run:

- ``point``: one positive click at the object's most interior pixel
  (:func:`~tilesam.evaluate.simulated_prompts.center_point`), three candidate masks,
  the one with the highest predicted IoU is taken;
- ``box``: the object's bounding box, one mask;
- ``clicks``: interactive correction as in SAM's evaluation. Click 1 is the
  ``point`` protocol; each further click goes into the largest error region of
  the current mask (:func:`~tilesam.evaluate.simulated_prompts.corrective_click`), and
  the decoder gets all clicks so far plus the previous mask's low-res logits,
  returning one mask. When a mask is perfect, later clicks keep its IoU.

Each image is embedded once, scaled as a :class:`tilesam.Session` opened on its file scales
it (an item's ``intensity``, :class:`~tilesam.evaluate.datasets.LabelledImage`; its own
range where it has none). Objects with fewer than :data:`MIN_OBJECT_PIXELS` pixels are
skipped and counted. The scores come back as an
:class:`~tilesam.evaluate.evaluation_result.EvaluationResult` (summaries with bootstrap
intervals, JSON); :mod:`tilesam.evaluate.evaluation_report` shows them as tables and plots.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from tilesam.errors import TileSAMError
from tilesam.evaluate.evaluation_result import EvaluationResult, ObjectResult
from tilesam.evaluate.simulated_prompts import box_from_mask, center_point, corrective_click

__all__ = ["MIN_OBJECT_PIXELS", "evaluate"]

MIN_OBJECT_PIXELS = 10
"""Objects smaller than this (in pixels) are skipped: a click cannot be simulated fairly."""


class PromptableModel(Protocol):
    """What :func:`evaluate` needs from a model (:class:`tilesam.SamModel` has it)."""

    def embed(self, image: np.ndarray, *, intensity: Any = None) -> Any: ...

    def predict(self, embedding: Any, **prompts: Any) -> Any: ...


class LabelledItem(Protocol):
    """One dataset item: an image, its instance labels (0 = background) and a name; an
    ``intensity`` attribute, where there is one, is the range the image is embedded with."""

    image: np.ndarray
    labels: np.ndarray
    name: str


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


def _select_objects(
    labels: np.ndarray, name: str, limit: int | None, seed: int
) -> tuple[list[tuple[int, int]], int]:
    """``[(object id, area)]`` to evaluate and the number skipped as too small.

    With ``limit``, a random subset seeded by ``seed`` and the image name, so
    the choice does not depend on the dataset's order or split.
    """
    ids, areas = np.unique(labels, return_counts=True)
    keep = ids != 0
    ids, areas = ids[keep], areas[keep]
    small = areas < MIN_OBJECT_PIXELS
    ids, areas = ids[~small], areas[~small]
    if limit is not None and len(ids) > limit:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        chosen = np.sort(rng.choice(len(ids), limit, replace=False))
        ids, areas = ids[chosen], areas[chosen]
    return [(int(i), int(a)) for i, a in zip(ids, areas, strict=True)], int(small.sum())


def _evaluate_object(
    model: PromptableModel, embedding: Any, gt: np.ndarray, n_clicks: int
) -> tuple[float, float, list[float], list[tuple[int, int, int]]]:
    """Point IoU, box IoU, IoU after 1..n clicks, and the clicks made."""
    box = model.predict(embedding, box=box_from_mask(gt), multimask=False)
    box_iou = _iou(box.mask(0), gt)
    y, x = center_point(gt)
    first = model.predict(embedding, points=np.array([[y, x]]), labels=np.array([1]))
    best = int(np.argmax(first.scores))
    # Logits first: mask() then reads them instead of upscaling a window of its own.
    logits, mask = first.low_res_logits[best], first.mask(best)
    clicks, ious = [(y, x, 1)], [_iou(mask, gt)]
    while len(ious) < n_clicks:
        click = corrective_click(mask, gt)
        if click is None:  # perfect: further clicks change nothing
            ious += [ious[-1]] * (n_clicks - len(ious))
            break
        clicks.append(click)
        points = np.array([c[:2] for c in clicks])
        res = model.predict(
            embedding,
            points=points,
            labels=np.array([c[2] for c in clicks]),
            mask_input=logits,
            multimask=False,
        )
        logits, mask = res.low_res_logits[0], res.mask(0)
        ious.append(_iou(mask, gt))
    return ious[0], box_iou, ious, clicks


def _check_item(item: LabelledItem) -> None:
    labels = np.asarray(item.labels)
    if labels.ndim != 2 or np.shape(item.image)[:2] != labels.shape:
        raise TileSAMError(
            f"{item.name}: evaluate needs 2D images with labels of the same (H, W), got image "
            f"{np.shape(item.image)} and labels {labels.shape}. Evaluate volumes slice by slice."
        )


def _evaluate_image(
    model: PromptableModel, item: LabelledItem, n_clicks: int, limit: int | None, seed: int
) -> tuple[list[ObjectResult], int]:
    _check_item(item)
    labels = np.asarray(item.labels)
    objects, n_small = _select_objects(labels, item.name, limit, seed)
    if not objects:
        return [], n_small
    # Once per image (every prompt reuses it), scaled as a session on its file scales it.
    embedding = model.embed(item.image, intensity=getattr(item, "intensity", None))
    rows = []
    for object_id, area in objects:
        scores = _evaluate_object(model, embedding, labels == object_id, n_clicks)
        rows.append(ObjectResult(item.name, object_id, area, *scores))
    return rows, n_small


def evaluate(
    model: PromptableModel,
    dataset: Sequence[LabelledItem],
    *,
    n_clicks: int = 8,
    max_objects_per_image: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> EvaluationResult:
    """Score ``model`` on every object of ``dataset`` with point, box and click prompts.

    Parameters
    ----------
    model
        A :class:`tilesam.SamModel` (anything with its ``embed``/``predict``).
    dataset
        Items with ``image`` (2D or RGB), ``labels`` (0 = background) and
        ``name``, e.g. a :class:`tilesam.evaluate.datasets.LabelledImageFolder` (whose
        items carry the ``intensity`` a session on their file uses).
    n_clicks : int
        Clicks of the interactive protocol (IoU recorded after each).
    max_objects_per_image : int, optional
        Evaluate at most this many objects per image, chosen at random from
        ``seed`` and the image name. All objects by default.
    seed : int
        Only for that choice: the prompts themselves are deterministic.
    progress : bool
        Show a progress bar over the images.

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> import tilesam
    >>> from tilesam.evaluate.datasets import LabelledImage
    >>> from tilesam.samples import load_sample
    >>> image, labels = load_sample("nuclei")
    >>> data = [LabelledImage(image, labels, "nuclei")]
    >>> result = evaluate(tilesam.load_model(), data, n_clicks=2, max_objects_per_image=5,
    ...                   progress=False)
    >>> len(result.objects), bool(result.summary["box"] > 0.5)
    (5, True)
    """
    if n_clicks < 1:
        raise TileSAMError(f"n_clicks must be at least 1, got {n_clicks}.")
    rows: list[ObjectResult] = []
    n_small = 0
    scaling = {}  # each image's normalisation, where the dataset says
    bar = tqdm(dataset, total=len(dataset), disable=not progress, desc="evaluate", unit="image")
    for item in bar:
        image_rows, skipped = _evaluate_image(model, item, n_clicks, max_objects_per_image, seed)
        rows += image_rows
        n_small += skipped
        if getattr(item, "normalisation", None) is not None:
            scaling[item.name] = item.normalisation
        bar.set_postfix(objects=len(rows))
    if not rows:
        raise TileSAMError(
            f"No object of at least {MIN_OBJECT_PIXELS} pixels in the dataset: nothing to score."
        )
    info = {
        "model": getattr(model, "name", type(model).__name__),
        "n_images": len(dataset),
        "n_skipped_small": n_small,
        "min_object_pixels": MIN_OBJECT_PIXELS,
        "max_objects_per_image": max_objects_per_image,
        "seed": seed,
    } | ({"normalisation": scaling} if scaling else {})
    return EvaluationResult(objects=rows, n_clicks=n_clicks, info=info)
