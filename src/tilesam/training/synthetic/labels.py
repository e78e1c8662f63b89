"""Instance label images: boundaries, connected clean-up and clusters of touching objects."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import measure


def _boundaries(lab: np.ndarray, inner_only: bool = False) -> np.ndarray:
    """Pixels next to a pixel of another label (``inner_only``: both labels non-zero)."""
    out = np.zeros(lab.shape, bool)
    dv = lab[1:] != lab[:-1]
    dh = lab[:, 1:] != lab[:, :-1]
    if inner_only:
        dv &= (lab[1:] > 0) & (lab[:-1] > 0)
        dh &= (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
    out[1:] |= dv
    out[:-1] |= dv
    out[:, 1:] |= dh
    out[:, :-1] |= dh
    return out


def _clean(
    lab: np.ndarray, min_size: float = 1, prefer: np.ndarray | None = None, split: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Make every label one connected region and number them ``1..N``.

    Each label keeps its largest 4-connected piece (or, with ``prefer``, the piece holding most
    ``prefer`` pixels); with ``split`` every piece becomes an object of its own instead. Pieces
    smaller than ``min_size`` are dropped. Returns the new label image and, for new id ``i``, the
    old id ``src[i - 1]``.
    """
    comp = measure.label(lab, background=0, connectivity=1)
    n = int(comp.max())
    if n == 0:
        return np.zeros(lab.shape, np.uint32), np.zeros(0, np.int64)
    flat = comp.ravel()
    sizes = np.bincount(flat, minlength=n + 1)
    owner = np.zeros(n + 1, np.int64)
    owner[flat] = lab.ravel()
    if split:
        keep = np.nonzero(sizes[1:] >= min_size)[0] + 1
    else:
        score = sizes.astype(np.float64)
        if prefer is not None:
            score += 1e9 * np.bincount(flat[prefer.ravel()], minlength=n + 1)
        cid = np.arange(1, n + 1)
        order = cid[np.lexsort((score[1:], owner[1:]))]
        ow = owner[order]
        best = order[np.r_[ow[1:] != ow[:-1], True]]
        keep = best[sizes[best] >= min_size]
    lut = np.zeros(n + 1, np.uint32)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.uint32)
    return lut[comp], owner[keep]


def _groups(lab: np.ndarray) -> np.ndarray:
    """Connected components of the foreground (clusters of touching objects), ids ``1..N``."""
    return ndi.label(lab > 0)[0].astype(np.uint32)
