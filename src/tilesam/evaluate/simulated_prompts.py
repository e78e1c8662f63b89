"""Simulated user prompts: the points, boxes and corrective clicks a person would give.

The same functions serve training (pass an ``rng`` for random prompts) and
evaluation (leave ``rng`` out for deterministic prompts), so a model is scored
with the kind of prompts it was trained on. Coordinates are array-index order
``(y, x)``; boxes are ``(y0, x0, y1, x1)``, end-exclusive.

All functions work on the bounding box of the object (or of the error) with a
one-pixel margin, so their cost depends on the object size, not on the image
size. Pixels outside the image count as background: a point is never placed
on the image border when the object extends inwards.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from tilesam.errors import TileSAMError

__all__ = [
    "box_from_mask",
    "center_point",
    "corrective_click",
    "middle_slice_point",
    "random_point",
]

# Bounding boxes up to this many pixels get an exact distance transform everywhere.
_EXACT_PIXELS = 128 * 128


def _as_mask(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise TileSAMError(f"{what} must be a 2D array (H, W), got shape {mask.shape}.")
    return mask.astype(bool, copy=False)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """End-exclusive ``(y0, x0, y1, x1)`` of the True pixels, or None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _require_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    box = _bbox(mask)
    if box is None:
        raise TileSAMError("The mask is empty: a prompt needs at least one object pixel.")
    return box


def _padded_crop(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The mask's bounding box with a one-pixel False margin, and the crop's origin.

    The margin makes distance transforms on the crop exact: the pixels there are
    background or outside the image, which both count as background.
    """
    y0, x0, y1, x1 = _require_bbox(mask)
    return np.pad(mask[y0:y1, x0:x1], 1), y0 - 1, x0 - 1


def _central(ys: np.ndarray, xs: np.ndarray) -> int:
    """Index of the point closest to the points' centroid; the first one on ties."""
    d2 = (ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2
    return int(np.argmin(d2))


def _argmax_central(values: np.ndarray) -> tuple[int, int]:
    ys, xs = np.nonzero(values == values.max())
    i = _central(ys, xs)
    return int(ys[i]), int(xs[i])


def _most_interior(crop: np.ndarray) -> tuple[int, int]:
    """Pixel of ``crop`` (zero margin) with the largest Euclidean distance to background.

    Exact, and the same pixel as an argmax over the full distance transform with
    the tie rule of :func:`center_point`. Large crops take a shortcut (see
    ``_coarse_to_fine``) when it pays.
    """
    f = int(np.ceil(np.sqrt(crop.size / _EXACT_PIXELS)))
    found = _coarse_to_fine(crop, f) if f > 1 else None
    if found is None:
        found = _argmax_central(ndimage.distance_transform_edt(crop))
    return found


def _coarse_to_fine(crop: np.ndarray, f: int) -> tuple[int, int] | None:
    """The most interior pixel via a grid coarsened ``f`` times, or None when not worth it.

    With ``dc`` the distance transform of the min-pooled grid (in pixels), a
    pixel's exact distance lies within ``dc -+ (f - 1) * sqrt(2)`` (both nearest
    pixels are at most half a block diagonal from their block centres). The
    exact distances of the best block's pixels give a lower bound on the
    maximum; only blocks whose upper bound reaches it are searched. Exact
    distances come from the background pixels that touch the object (the
    nearest background pixel always does), within reach of the candidates.
    """
    coarse = ndimage.distance_transform_edt(_min_pool(crop, f)) * f
    slack = (f - 1) * np.sqrt(2)
    blocks = np.argwhere(coarse + slack >= coarse.max() - slack - 1e-9)
    if coarse.max() == 0 or len(blocks) * f * f > crop.size // 16:
        return None
    pixels = _block_pixels(crop, blocks, f)
    reach = int(np.ceil(coarse[tuple(blocks.T)].max() + slack)) + 1
    (y0, x0), (y1, x1) = pixels.min(axis=0) - reach, pixels.max(axis=0) + reach + 1
    y0, x0 = max(y0, 0), max(x0, 0)
    tree = cKDTree(_touching_background(crop[y0:y1, x0:x1]) + (y0, x0))
    top = _block_pixels(crop, blocks[coarse[tuple(blocks.T)] == coarse.max()][:1], f)
    upper = coarse[tuple((pixels // f).T)] + slack
    pixels = pixels[upper >= tree.query(top)[0].max() - 1e-9]
    dist, _ = tree.query(pixels)
    best = pixels[dist == dist.max()]
    i = _central(best[:, 0], best[:, 1])
    return int(best[i, 0]), int(best[i, 1])


def _block_pixels(crop: np.ndarray, blocks: np.ndarray, f: int) -> np.ndarray:
    """``(n, 2)`` object pixels of the given ``f`` x ``f`` blocks, in raster order per block."""
    offsets = np.stack(np.mgrid[:f, :f], axis=-1).reshape(-1, 2)
    pixels = (blocks[:, None, :] * f + offsets).reshape(-1, 2)
    pixels = pixels[(pixels[:, 0] < crop.shape[0]) & (pixels[:, 1] < crop.shape[1])]
    return pixels[crop[pixels[:, 0], pixels[:, 1]]]


def _touching_background(crop: np.ndarray) -> np.ndarray:
    """``(n, 2)`` background pixels with an object pixel among their 4 neighbours."""
    touching = np.zeros_like(crop)
    touching[1:] |= crop[:-1]
    touching[:-1] |= crop[1:]
    touching[:, 1:] |= crop[:, :-1]
    touching[:, :-1] |= crop[:, 1:]
    return np.argwhere(touching & ~crop)


def _min_pool(mask: np.ndarray, f: int) -> np.ndarray:
    """True where a whole ``f`` x ``f`` block of ``mask`` is True (blocks past the end: False)."""
    h, w = -(-mask.shape[0] // f) * f, -(-mask.shape[1] // f) * f
    padded = np.zeros((h, w), bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    rows = np.logical_and.reduce([padded[i::f] for i in range(f)])
    return np.logical_and.reduce([rows[:, i::f] for i in range(f)])


def center_point(mask: np.ndarray) -> tuple[int, int]:
    """The object pixel farthest from the object's boundary.

    Uses the Euclidean distance transform; the image border counts as boundary.
    Ties (a plateau of equal distance, as in a rectangle) are broken by taking
    the tied pixel closest to the plateau's centroid, then the first in raster
    order, so the result is deterministic. Large objects are searched
    coarse-to-fine with the same, exact, result (see ``_most_interior``).

    Parameters
    ----------
    mask : (H, W) array
        The object, nonzero inside.

    Returns
    -------
    (y, x) : tuple of int

    Examples
    --------
    >>> m = np.zeros((7, 9), bool); m[1:6, 2:7] = True
    >>> center_point(m)
    (3, 4)
    """
    crop, oy, ox = _padded_crop(_as_mask(mask))
    y, x = _most_interior(crop)
    return y + oy, x + ox


def middle_slice_point(mask: np.ndarray) -> tuple[int, int, int]:
    """``(z, y, x)``: the :func:`center_point` of a 3D object's middle slice, the one click
    that starts a slice-to-slice propagation in evaluations.

    Examples
    --------
    >>> m = np.zeros((5, 7, 9), bool); m[1:4, 1:6, 2:7] = True
    >>> middle_slice_point(m)
    (2, 3, 4)
    """
    mask = np.asarray(mask)
    zs = np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))
    if zs.size == 0:
        raise TileSAMError("The mask is empty: there is no object to place a point in.")
    z = int(zs[len(zs) // 2])
    return (z, *center_point(mask[z]))


def random_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly random pixel of the object.

    Examples
    --------
    >>> m = np.zeros((5, 5), bool); m[2, 3] = True
    >>> random_point(m, np.random.default_rng(0))
    (2, 3)
    """
    mask = _as_mask(mask)
    y0, x0, y1, x1 = _require_bbox(mask)
    flat = np.flatnonzero(mask[y0:y1, x0:x1])
    y, x = divmod(int(flat[rng.integers(flat.size)]), x1 - x0)
    return y + y0, x + x0


def box_from_mask(
    mask: np.ndarray, jitter: float = 0.0, rng: np.random.Generator | None = None
) -> tuple[int, int, int, int]:
    """The object's bounding box ``(y0, x0, y1, x1)``, end-exclusive, optionally jittered.

    Parameters
    ----------
    mask : (H, W) array
        The object, nonzero inside.
    jitter : float
        Standard deviation of the Gaussian noise added to each edge, as a
        fraction of the box side along that axis (SAM trains with 0.1). The
        jittered box is rounded, clipped to the image and kept at least one
        pixel wide.
    rng : numpy.random.Generator, optional
        Source of the noise; pass one for reproducible boxes. A fresh
        generator is used when it is None and ``jitter > 0``.

    Examples
    --------
    >>> m = np.zeros((8, 8), bool); m[2:5, 1:7] = True
    >>> box_from_mask(m)
    (2, 1, 5, 7)
    """
    mask = _as_mask(mask)
    box = _require_bbox(mask)
    if jitter <= 0:
        return box
    return jitter_box(box, jitter, mask.shape, rng)


def jitter_box(
    box: tuple[int, int, int, int],
    jitter: float,
    shape: tuple[int, int],
    rng: np.random.Generator | None = None,
) -> tuple[int, int, int, int]:
    """``box`` ``(y0, x0, y1, x1)`` with Gaussian noise of `jitter` times its side on each
    edge, rounded, clipped to an image of `shape` and kept at least one pixel wide (see
    :func:`box_from_mask`; for a known box, without its mask).

    Examples
    --------
    >>> jitter_box((2, 1, 5, 7), 0.0, (8, 8))
    (2, 1, 5, 7)
    """
    rng = np.random.default_rng() if rng is None else rng
    edges = np.array(box, dtype=float)
    side = np.array([edges[2] - edges[0], edges[3] - edges[1]] * 2)
    edges = np.rint(edges + rng.normal(0.0, jitter, 4) * side)
    h, w = shape
    y0, y1 = _ordered_span(edges[0], edges[2], h)
    x0, x1 = _ordered_span(edges[1], edges[3], w)
    return y0, x0, y1, x1


def _ordered_span(a: float, b: float, size: int) -> tuple[int, int]:
    """Clip an end-exclusive span to ``[0, size]`` and keep it at least one pixel long."""
    lo, hi = sorted((int(a), int(b)))
    lo = min(max(lo, 0), size - 1)
    hi = min(max(hi, lo + 1), size)
    return lo, hi


def _largest_region(fn: np.ndarray, fp: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest connected error region and its click label (1 for fn, 0 for fp).

    Ties go to the false negative, then to the region found first in raster order.
    """
    best, best_size, best_label = None, 0, 1
    for error, label in ((fn, 1), (fp, 0)):
        regions, n = ndimage.label(error)
        if n == 0:
            continue
        sizes = np.bincount(regions.ravel())[1:]
        k = int(np.argmax(sizes))
        if sizes[k] > best_size:
            best, best_size, best_label = regions == k + 1, int(sizes[k]), label
    return best, best_label


def corrective_click(
    pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[int, int, int] | None:
    """The next click a user would make to correct ``pred`` towards ``gt``.

    The click goes into the largest connected error region (4-connectivity):
    a missed part of the object (false negative) gets a positive click
    (label 1), a spurious part (false positive) a negative click (label 0).

    Parameters
    ----------
    pred, gt : (H, W) arrays
        Predicted and true object masks.
    rng : numpy.random.Generator, optional
        None: the region's most interior pixel (as :func:`center_point`,
        deterministic, for evaluation). Given: a random pixel of the region,
        with probability proportional to its city-block distance from the region's
        boundary (for training).

    Returns
    -------
    (y, x, label) : tuple of int, or None when ``pred`` equals ``gt``.

    Examples
    --------
    >>> gt = np.zeros((11, 11), bool); gt[2:9, 2:9] = True
    >>> pred = gt.copy(); pred[:, 6:] = False
    >>> corrective_click(pred, gt)
    (5, 7, 1)
    """
    pred, gt = _as_mask(pred, "pred"), _as_mask(gt, "gt")
    if pred.shape != gt.shape:
        raise TileSAMError(f"pred {pred.shape} and gt {gt.shape} must have the same shape.")
    error = pred != gt
    window = _bbox(error)
    if window is None:
        return None
    y0, x0, y1, x1 = window
    g, p = gt[y0:y1, x0:x1], pred[y0:y1, x0:x1]
    region, label = _largest_region(g & ~p, p & ~g)
    if rng is None:
        y, x = center_point(region)
    else:
        y, x = _interior_weighted_point(region, rng)
    return y + y0, x + x0, label


def _interior_weighted_point(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """Random pixel of ``region``, with probability proportional to its city-block depth."""
    crop, oy, ox = _padded_crop(region)
    depth = ndimage.distance_transform_cdt(crop, metric="taxicab").ravel()
    cumulative = np.cumsum(depth)
    i = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    y, x = divmod(i, crop.shape[1])
    return y + oy, x + ox
