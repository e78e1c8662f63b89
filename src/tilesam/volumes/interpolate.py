"""Shape-based interpolation: an object's masks on the slices between two of its masks.

Between a mask on slice ``a`` and one on slice ``b``, each slice in between gets the
zero level of the two masks' signed distance maps mixed linearly by its place (Raya and
Udupa's shape-based interpolation, what 3D Slicer's *Fill between slices* offers): the
outline moves and grows smoothly from one mask to the other, an object that splits or
merges does so halfway, and no model is asked. It fills what a model's walk could not
reach between two annotations (:func:`tilesam.volumes.walk.propagate_labels`), or, with
``method="interpolate"``, everything between a user's annotated slices.

Distances are in pixels of the slice: with pixels far from square the in-between outlines
lean towards the finer axis, as with any in-plane interpolation on the pixel grid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

INTERPOLATE = "interpolate"  # the propagation method that asks no model: only this


def between(lower: np.ndarray, upper: np.ndarray, count: int) -> list[tuple[np.ndarray, tuple]]:
    """The `count` masks evenly spaced between the ``(H, W)`` masks `lower` and `upper`
    (both exclusive), each as ``(mask, (rows, cols))``: its window and where that lies.

    The two shapes are mixed with their centres of mass laid on each other, and each mask
    between is placed where the centre moves to: a section that slides further than its own
    width from one slice to the next (a vessel seen obliquely) is followed, where mixing the
    distance maps where they lie would make it vanish halfway. Only single pieces are laid
    on each other so: where either mask has several pieces (both kidneys under one id, a
    vessel that branches), a piece that changes size would move the centre of mass and drag
    the others out of line, so those are mixed where they lie; so are two that would leave a
    slice between them empty (a ring laid on a disc).

    Examples
    --------
    A disc of radius 4 and one of radius 12 twenty pixels away: the three between have radii
    near 6, 8 and 10 (areas of such discs: 113, 201, 314 pixels) and centres 5 pixels apart.

    >>> yy, xx = np.mgrid[:40, :60]
    >>> disc = lambda radius, x: (yy - 20) ** 2 + (xx - x) ** 2 <= radius**2
    >>> steps = between(disc(4, 20), disc(12, 40), 3)
    >>> [int(mask.sum()) for mask, _ in steps]
    [121, 189, 293]
    >>> [(cols.start + cols.stop - 1) / 2 for _, (rows, cols) in steps]
    [25.0, 30.0, 35.0]
    """
    if _pieces(lower) == _pieces(upper) == 1:
        steps = _aligned(lower, upper, count)
        if all(mask.any() for mask, _ in steps):
            return steps
    return _in_place(lower, upper, count)


def _pieces(mask: np.ndarray) -> int:
    return ndimage.label(mask)[1]


def _aligned(lower: np.ndarray, upper: np.ndarray, count: int) -> list[tuple[np.ndarray, tuple]]:
    """`between`, the two shapes laid on each other by their centres of mass."""
    (near, near_at), (far, far_at) = _centred(lower), _centred(upper)
    size = tuple(int(n) for n in np.maximum(near.shape, far.shape))
    near, far = (_signed_distance(_pad_to(window, size)) for window in (near, far))
    height, width = lower.shape
    steps = []
    for i in range(1, count + 1):
        place = i / (count + 1)
        mask = (1.0 - place) * near + place * far > 0.0
        # The window's centre goes where the centre of mass has moved to.
        centre = (1.0 - place) * near_at + place * far_at
        y0, x0 = (int(round(c)) - n // 2 for c, n in zip(centre, size))
        rows = slice(max(y0, 0), min(y0 + size[0], height))
        cols = slice(max(x0, 0), min(x0 + size[1], width))
        steps.append((mask[rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0],
                      (rows, cols)))  # fmt: skip
    return steps


def _in_place(lower: np.ndarray, upper: np.ndarray, count: int) -> list[tuple[np.ndarray, tuple]]:
    """`between`, the two shapes mixed where they lie, on the window that holds both."""
    either = lower | upper
    rows, cols = np.flatnonzero(either.any(1)), np.flatnonzero(either.any(0))
    window = (
        slice(max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, lower.shape[0])),
        slice(max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, lower.shape[1])),
    )
    # Padded, as `_centred` pads: the image's border is the object's edge there too.
    near, far = (_signed_distance(np.pad(m[window], 1))[1:-1, 1:-1] for m in (lower, upper))
    places = np.arange(1, count + 1) / (count + 1)
    return [((1.0 - place) * near + place * far > 0.0, window) for place in places]


def fill_between(labels: np.ndarray, obj: int, lower: int, upper: int) -> None:
    """Write object `obj` into the slices of `labels` ``(Z, H, W)`` strictly between
    `lower` and `upper`, interpolated from its masks there, over background only (pixels
    other objects own are never taken).

    >>> labels = np.zeros((5, 9, 9), np.uint32)
    >>> labels[0, 2:7, 2:7] = labels[4, 3:6, 3:6] = 1
    >>> labels[2, 4, :] = 2  # another object, crossing slice 2
    >>> fill_between(labels, 1, 0, 4)
    >>> (labels == 1).sum(axis=(1, 2)).tolist(), int((labels == 2).sum())
    ([25, 25, 6, 9, 9], 9)
    """
    steps = between(labels[lower] == obj, labels[upper] == obj, upper - lower - 1)
    for z, (mask, (rows, cols)) in enumerate(steps, start=lower + 1):
        region = labels[z, rows, cols]
        region[mask & (region == 0)] = obj


def _centred(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`mask` on a window centred on its centre of mass (odd sides, a pixel of background
    around), and that centre ``(y, x)``."""
    centre = np.array(ndimage.center_of_mass(mask))
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    middle = np.round(centre).astype(int)
    reach = (
        max(middle[0] - rows[0], rows[-1] - middle[0]) + 1,
        max(middle[1] - cols[0], cols[-1] - middle[1]) + 1,
    )
    window = np.zeros((2 * reach[0] + 1, 2 * reach[1] + 1), bool)
    part = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    top, left = reach[0] - (middle[0] - rows[0]), reach[1] - (middle[1] - cols[0])
    window[top : top + part.shape[0], left : left + part.shape[1]] = part
    return window, centre


def _pad_to(window: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`window` (odd sides) centred in one of `size` (odd sides)."""
    return np.pad(window, [((s - n) // 2,) * 2 for s, n in zip(size, window.shape)])


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Positive inside `mask`, negative outside; the boundary between pixels at 0 (a pixel
    inside counts half a pixel from it, one outside minus half)."""
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, inside - 0.5, 0.5 - outside)
