"""Keep the object a prompt points at: drop mask parts that no positive point or box touches.

A prompt names one object: it lies under the positive points and inside the box. A decoder
that sees the whole image may still add look-alike objects elsewhere (the default ``tiny``,
trained on crops, does so often on fields of nuclei); those parts are not connected to the
prompt. :func:`keep_prompted` keeps the connected components (8-connected) that hold a
positive point or overlap the box, and clips them to the box; a component clicked outside
the box is kept whole (the click says the object is there too).

Measured with ``tiny`` on held-out real nuclei (docs/benchmarks.md): one point 0.47 -> 0.78
mean IoU, a box 0.44 -> 0.77. On validation images, clipping to the box itself scored
better than to the box grown by 5 or 10 % (box IoU 0.825, 0.810, 0.804).
``SamModel.predict(..., keep_prompted=False)`` returns the decoder's masks as they are, as
the official SAM code does.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tilesam.decode.prompt import Prompt

_EIGHT = np.ones((3, 3), dtype=bool)


def keep_prompted(mask: np.ndarray, prompt: Prompt, *, clip: bool = True) -> np.ndarray:
    """The components of boolean ``mask`` that ``prompt`` touches, clipped to its box.

    A component is kept if it holds a positive point or overlaps the box. When no component
    does (a point just beside a thin object), the one nearest the first point is kept.
    With ``clip``, the result is cut to the box, except components holding a positive point
    outside it.

    Examples
    --------
    >>> m = np.zeros((6, 9), bool); m[1:3, 1:3] = m[1:3, 6:8] = True
    >>> int(keep_prompted(m, Prompt(np.array([[1.5, 1.5]]))).sum())
    4
    """
    if not prompt.has_object or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=_EIGHT)
    positive = prompt.positive
    cells = _point_cells(positive, mask.shape)
    at_points = labels[cells[:, 0], cells[:, 1]]
    ids = set(at_points.tolist())
    box = None if prompt.box is None else _box_slices(prompt.box, mask.shape)
    if box is not None:
        ids.update(np.unique(labels[box]).tolist())
    ids.discard(0)
    if not ids and len(positive):
        ids = {_nearest_label(labels, positive[0])}
    kept = _members(labels, count, ids)
    if clip and box is not None:
        ys, xs = box
        in_box = (cells[:, 0] >= ys.start) & (cells[:, 0] < ys.stop)
        in_box &= (cells[:, 1] >= xs.start) & (cells[:, 1] < xs.stop)
        clipped = np.zeros_like(kept)
        clipped[box] = kept[box]
        whole = at_points[~in_box]  # clicked outside the box: kept whole
        kept = clipped | _members(labels, count, set(whole[whole > 0].tolist()))
    return kept


def _members(labels: np.ndarray, count: int, ids: set[int]) -> np.ndarray:
    """Pixels of the components `ids` (a lookup table: one gather, unlike ``np.isin``; one
    comparison for one component, none for all: a large object is mostly one)."""
    if len(ids) == count:
        return labels > 0
    if len(ids) == 1:
        return labels == next(iter(ids))
    table = np.zeros(count + 1, dtype=bool)
    table[sorted(ids)] = True
    return table[labels]


def _nearest_label(labels: np.ndarray, point: np.ndarray) -> int:
    """The component nearest to `point`, searched in growing squares around it: the nearest
    pixel of a square is the nearest of all once it is no farther than the square's edge."""
    point = np.asarray(point, dtype=float)
    radius = 8
    while True:
        lo = np.maximum(np.floor(point).astype(int) - radius, 0)
        hi = np.minimum(np.floor(point).astype(int) + radius + 1, labels.shape)
        where = np.argwhere(labels[lo[0] : hi[0], lo[1] : hi[1]] > 0) + lo
        whole = (lo == 0).all() and (hi == labels.shape).all()
        if where.size:
            squared = ((where - point) ** 2).sum(axis=1)
            if squared.min() <= radius**2 or whole:
                return int(labels[tuple(where[np.argmin(squared)])])
        radius *= 2


def touches_prompt(mask: np.ndarray, prompt: Prompt) -> bool:
    """Whether `mask` holds a positive point's pixel or overlaps the box: what
    :func:`keep_prompted` keeps, unless it fell back to the part nearest the first point."""
    cells = _point_cells(prompt.positive, mask.shape)
    if mask[cells[:, 0], cells[:, 1]].any():
        return True
    return prompt.box is not None and bool(mask[_box_slices(prompt.box, mask.shape)].any())


def _point_cells(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The pixels ``(n, 2)`` under `points`, those inside an image of `shape` only."""
    cells = np.floor(np.asarray(points, dtype=float)).astype(int).reshape(-1, 2)
    return cells[((cells >= 0) & (cells < shape[:2])).all(axis=1)]


def _box_slices(box: tuple[float, ...], shape: tuple[int, ...]) -> tuple[slice, slice]:
    # Ends clamped at 0 too: a negative stop would count from the far edge.
    y0, x0, y1, x1 = box
    ys = slice(max(int(np.floor(y0)), 0), max(min(int(np.ceil(y1)), shape[0]), 0))
    xs = slice(max(int(np.floor(x0)), 0), max(min(int(np.ceil(x1)), shape[1]), 0))
    return ys, xs
