"""Synthetic training images with nested instance ground truth.

The default ``tiny`` model is trained on CPU, mostly from images made here, and must then work on
real fluorescence microscopy, CT slices and aerial photographs. Every generator therefore tries to
reproduce what real data looks like rather than what is easy to draw: a wide range of object sizes
with one size regime per image, touching objects whose labels still partition the image, internal
texture, dim and bright objects side by side, uneven illumination, background offsets, blur and
realistic noise, and the dtypes real instruments write (low-filled ``uint16`` for fluorescence).

Each sample carries one or more instance label images, finest first, in which every object of
level ``k`` lies inside exactly one object of level ``k + 1`` (a nucleus inside its cell inside its
cluster of cells). A click therefore has up to ``len(levels)`` valid nested answers, which is what
SAM's multimask output is trained on.

Everything is vectorised numpy/scipy: a 256 x 256 sample takes a few milliseconds to a few tens of
milliseconds on one core, so the training loop can draw samples online.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage import measure

from tilesam.errors import TileSAMError

__all__ = ["KINDS", "SyntheticSample", "make_sample", "sample_stream"]

KINDS: tuple[str, ...] = ("nuclei", "cells", "ct", "aerial")
"""The kinds of image :func:`make_sample` can draw."""

Shape = tuple[int, int]
Levels = tuple[np.ndarray, ...]
Rng = np.random.Generator

_MIN_SIDE = 16
_ANGLE_BINS = 128
_F32 = np.float32


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic image with its nested instance labels.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W)`` grayscale ``uint8`` or ``uint16`` (fluorescence often ``uint16`` with a low fill
        of its range, CT ``uint8`` after a soft-tissue window or raw ``uint16`` HU + 1024), or
        ``(H, W, 3)`` ``uint8`` RGB for aerial scenes.
    levels : tuple of numpy.ndarray
        Instance label images ``(H, W)`` ``uint32``, ``0`` = background, ids ``1..N`` consecutive
        within each level, finest level first. Every object of level ``k`` lies inside exactly one
        object of level ``k + 1``.
    kind : str
        One of :data:`KINDS`.

    Examples
    --------
    >>> s = make_sample("cells", (128, 128), rng=0)
    >>> len(s.levels), s.levels[0].dtype.name
    (3, 'uint32')
    """

    image: np.ndarray
    levels: tuple[np.ndarray, ...]
    kind: str


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def make_sample(
    kind: str,
    size: tuple[int, int] | int = (256, 256),
    rng: np.random.Generator | int | None = None,
) -> SyntheticSample:
    """Draw one synthetic image with nested instance labels.

    Parameters
    ----------
    kind : str
        ``"nuclei"`` (fluorescence nuclei; levels ``(nuclei,)`` or ``(nuclei, clusters)``),
        ``"cells"`` (cytoplasm stain with nuclei; levels ``(nuclei, cells, clusters)``),
        ``"ct"`` (CT-like slice; levels ``(organs, body)``) or ``"aerial"`` (RGB scene; levels
        ``(objects,)`` for rural scenes or ``(roofs, building blocks)`` for urban ones).
    size : tuple of int or int, default (256, 256)
        ``(H, W)`` of the image; an int means a square. Each side must be at least 16.
    rng : numpy.random.Generator or int or None
        Random source or seed. The same seed gives the same sample.

    Returns
    -------
    SyntheticSample
        The image, its label levels (finest first) and ``kind``. Level 0 always holds at least
        one object.

    Raises
    ------
    TileSAMError
        If ``kind`` is unknown or ``size`` is not valid.

    Examples
    --------
    >>> s = make_sample("nuclei", (256, 256), rng=1)
    >>> s.image.shape, s.levels[0].shape
    ((256, 256), (256, 256))
    >>> int(s.levels[0].max()) > 0
    True
    """
    if kind not in _GENERATORS:
        raise TileSAMError(f"unknown synthetic kind {kind!r}; valid kinds are {', '.join(KINDS)}")
    shape = _check_size(size)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    image, levels = None, ()
    for _ in range(20):
        image, levels = _GENERATORS[kind](gen, shape)
        if levels[0].max() > 0:
            break
    levels = tuple(np.ascontiguousarray(lv, dtype=np.uint32) for lv in levels)
    return SyntheticSample(image=image, levels=levels, kind=kind)


def sample_stream(
    kinds: Sequence[str] = KINDS,
    size: tuple[int, int] | int = (256, 256),
    seed: int = 0,
    weights: Sequence[float] | None = None,
) -> Iterator[SyntheticSample]:
    """Endless, reproducible stream of synthetic samples.

    Parameters
    ----------
    kinds : sequence of str, default KINDS
        Kinds to draw from (see :func:`make_sample`).
    size : tuple of int or int, default (256, 256)
        ``(H, W)`` of every image.
    seed : int, default 0
        The same seed gives the same stream.
    weights : sequence of float, optional
        Relative frequency of each kind; equal by default.

    Returns
    -------
    Iterator[SyntheticSample]
        An infinite iterator.

    Raises
    ------
    TileSAMError
        Immediately (not on the first ``next``) if a kind is unknown, ``kinds`` is empty, the
        weights do not match the kinds or are not non-negative with a positive sum, or ``size`` is
        not valid.

    Examples
    --------
    >>> stream = sample_stream(("nuclei", "aerial"), size=(64, 64), seed=3, weights=(3, 1))
    >>> [next(stream).kind in ("nuclei", "aerial") for _ in range(4)]
    [True, True, True, True]
    """
    kinds = tuple(kinds)
    if not kinds:
        raise TileSAMError(f"sample_stream needs at least one kind; valid kinds are {KINDS}")
    for k in kinds:
        if k not in _GENERATORS:
            raise TileSAMError(f"unknown synthetic kind {k!r}; valid kinds are {', '.join(KINDS)}")
    if weights is None:
        p = np.full(len(kinds), 1.0 / len(kinds))
    else:
        p = np.asarray(weights, dtype=np.float64)
        if p.shape != (len(kinds),) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            raise TileSAMError(
                f"weights must be {len(kinds)} non-negative numbers with a positive sum, "
                f"one per kind in {kinds}; got {weights!r}"
            )
        p = p / p.sum()
    shape = _check_size(size)
    return _stream(kinds, shape, int(seed), p)


def _stream(
    kinds: tuple[str, ...], shape: tuple[int, int], seed: int, p: np.ndarray
) -> Iterator[SyntheticSample]:
    master = np.random.default_rng(np.random.SeedSequence(seed))
    while True:
        k = kinds[int(master.choice(len(kinds), p=p))]
        child = np.random.default_rng(int(master.integers(0, 2**63 - 1)))
        yield make_sample(k, shape, child)


def _check_size(size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or h < _MIN_SIDE or w < _MIN_SIDE:
        raise TileSAMError(
            f"size must be (H, W) with integer sides of at least {_MIN_SIDE}; got {size!r}"
        )
    return h, w


# ----------------------------------------------------------------------------------------------
# Random fields, filters and label utilities
# ----------------------------------------------------------------------------------------------


def _loguniform(rng: Rng, lo: float, hi: float, n: int | None = None) -> Any:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), n))


def _taps(n: int, m: int, pos: np.ndarray, cubic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights that sample a length-``m`` grid at (fractional) positions ``pos``."""
    i0 = np.floor(pos).astype(np.intp)
    t = (pos - i0)[:, None]
    if cubic:  # cubic B-spline: smooth, no grid creases; rows scaled to unit sum of squares
        w = np.concatenate(
            [(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3],
            axis=1,
        )
        w /= np.sqrt((w * w).sum(axis=1, keepdims=True))
        idx = i0[:, None] + np.arange(-1, 3)[None, :]
    else:
        w = np.concatenate([1 - t, t], axis=1)
        idx = i0[:, None] + np.arange(2)[None, :]
    return np.clip(idx, 0, m - 1), w.astype(_F32)


def _resample(grid: np.ndarray, taps_y, taps_x) -> np.ndarray:
    """Separable resampling of a small 2-D grid with per-output-pixel taps (no BLAS)."""
    iy, wy = taps_y
    ix, wx = taps_x
    rows = wy[:, 0, None] * grid[iy[:, 0]]
    for k in range(1, iy.shape[1]):
        rows += wy[:, k, None] * grid[iy[:, k]]
    out = rows[:, ix[:, 0]] * wx[None, :, 0]
    for k in range(1, ix.shape[1]):
        out += rows[:, ix[:, k]] * wx[None, :, k]
    return out


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ~``scale`` px."""
    if scale < 2.5:
        white = rng.standard_normal(shape, dtype=_F32)
        sigma = 0.75 * scale
        if sigma < 0.5:
            return white
        out = ndi.gaussian_filter(white, sigma, mode="wrap", truncate=3.0)
        out *= _F32(math.sqrt(4.0 * math.pi) * sigma)
        return out
    h, w = shape
    gh, gw = int(h / scale) + 4, int(w / scale) + 4
    grid = rng.standard_normal((gh, gw), dtype=_F32)
    ty = _taps(h, gh, np.arange(h) / scale + 1.0, cubic=True)
    tx = _taps(w, gw, np.arange(w) / scale + 1.0, cubic=True)
    return _resample(grid, ty, tx)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas are done on a block-averaged copy (fast, visually the same)."""
    if sigma < 0.3:
        return img
    if sigma <= 4.0:
        return ndi.gaussian_filter(img, sigma, mode="nearest", truncate=3.0)
    f = int(sigma // 2)
    h, w = img.shape
    hs, ws = -(-h // f), -(-w // f)
    pad = np.pad(img, ((0, hs * f - h), (0, ws * f - w)), mode="edge")
    small = pad.reshape(hs, f, ws, f).mean(axis=(1, 3), dtype=_F32)
    small = ndi.gaussian_filter(
        small, math.sqrt(max(sigma**2 - f**2 / 4, 0.25)) / f, mode="nearest"
    )
    ty = _taps(h, hs, np.clip((np.arange(h) + 0.5) / f - 0.5, 0, hs - 1), cubic=False)
    tx = _taps(w, ws, np.clip((np.arange(w) + 0.5) / f - 0.5, 0, ws - 1), cubic=False)
    return _resample(small, ty, tx)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


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


def _pseudo_angle_grid() -> np.ndarray:
    """True angles of ``_ANGLE_BINS + 1`` points evenly spaced in the pseudo-angle ``[-2, 2]``.

    The pseudo-angle ``p = y / (|x| + |y|)`` (``sign(y) * 2 - p`` where ``x < 0``) increases with
    the polar angle like ``arctan2`` but costs a few cheap operations instead of a slow one.
    """
    pa = np.linspace(-2.0, 2.0, _ANGLE_BINS + 1)
    left = np.abs(pa) > 1
    p = np.where(left, np.sign(pa) * 2 - pa, pa)
    x = np.where(left, -(1 - np.abs(p)), 1 - np.abs(p))
    return np.arctan2(p, x)


def _paint(
    shape: tuple[int, int],
    cy: np.ndarray,
    cx: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    theta: np.ndarray,
    *,
    bend: np.ndarray | None = None,
    amp: np.ndarray | None = None,
    phase: np.ndarray | None = None,
    priority: np.ndarray | None = None,
    box: bool = False,
    local: bool = False,
):
    """Rasterise many deformed ellipses (or rotated boxes) at once into a partition.

    Object ``i`` has centre ``(cy, cx)``, semi-axes ``a`` (along angle ``theta``) and ``b``, an
    optional banana bend and a radius modulated by harmonics ``2..K+1`` (``amp``, ``phase`` of shape
    ``(N, K)``). Its normalised depth is ``s = 1 - rho / R(angle)`` (1 at the centre, 0 on the
    outline). Where objects overlap, the one with the larger ``s + priority`` wins, so overlapping
    neighbours end up touching along a natural seam and labels never overlap.

    Returns ``(lab, depth)`` with ``lab`` = object index + 1 (``0`` = none) and ``depth`` = ``s`` of
    the winner; with ``local`` also the winner's normalised local coordinates ``(un, vn)``.
    """
    h, w = shape
    n = len(cy)
    cy = np.asarray(cy, np.float64)
    cx = np.asarray(cx, np.float64)
    a = np.maximum(np.asarray(a, np.float64), 0.5)
    b = np.maximum(np.asarray(b, np.float64), 0.5)
    theta = np.asarray(theta, np.float64)
    bend = np.zeros(n) if bend is None else np.asarray(bend, np.float64)
    prio = np.zeros(n) if priority is None else np.asarray(priority, np.float64)
    if amp is None:
        amp = np.zeros((n, 0))
        phase = np.zeros((n, 0))
    rmax = 1.0 + np.abs(amp).sum(axis=1)
    table = None
    ang = _pseudo_angle_grid()
    if amp.shape[1]:
        orders = np.arange(2, amp.shape[1] + 2)
        arg = orders[None, :, None] * ang[None, None, :] + phase[:, :, None]
        table = np.maximum(1.0 + (amp[:, :, None] * np.cos(arg)).sum(axis=1), 0.2).astype(_F32)
    # Exact half-extents from points on each outline (rotated frame -> image frame).
    if box:
        corners = np.array([-1.0, 1.0, 1.0, -1.0])
        on_u = rmax[:, None] * corners[None, :]
        on_v = rmax[:, None] * np.roll(corners, 1)[None, :]
    else:
        rad = np.ones((n, len(ang))) if table is None else table.astype(np.float64)
        on_u = rad * np.cos(ang)[None, :]
        on_v = rad * np.sin(ang)[None, :]
    pu = a[:, None] * on_u
    pv = b[:, None] * on_v + (bend * a)[:, None] * on_u**2
    ct, st = np.cos(theta)[:, None], np.sin(theta)[:, None]
    hy = np.ceil(np.abs(pu * st + pv * ct).max(axis=1) + 1.5).astype(np.int64)
    hx = np.ceil(np.abs(pu * ct - pv * st).max(axis=1) + 1.5).astype(np.int64)
    iy = np.round(cy).astype(np.int64)
    ix = np.round(cx).astype(np.int64)
    visible = (iy + hy >= 0) & (iy - hy < h) & (ix + hx >= 0) & (ix - hx < w)
    canvas = np.zeros(h * w, np.int64)
    idx_all, key_all, un_all, vn_all = [], [], [], []
    order = np.nonzero(visible)[0]
    order = order[np.argsort(np.maximum(hy, hx)[order], kind="stable")]
    rlim = (rmax if box else rmax**2).astype(_F32)
    start = 0
    budget = 600_000
    while start < len(order):
        py, px = int(hy[order[start]]), int(hx[order[start]])
        stop = start + 1
        while stop < len(order):
            ny = max(py, int(hy[order[stop]]))
            nx = max(px, int(hx[order[stop]]))
            if (stop + 1 - start) * (2 * ny + 1) * (2 * nx + 1) > budget:
                break
            py, px = ny, nx
            stop += 1
        sel = order[start:stop]
        start = stop
        ky = np.arange(-py, py + 1)
        kx = np.arange(-px, px + 1)
        gy = (iy[sel][:, None, None] + ky[None, :, None]).astype(np.int32)
        gx = (ix[sel][:, None, None] + kx[None, None, :]).astype(np.int32)
        dy = gy.astype(_F32) - cy[sel].astype(_F32)[:, None, None]
        dx = gx.astype(_F32) - cx[sel].astype(_F32)[:, None, None]
        ct = np.cos(theta[sel])
        st = np.sin(theta[sel])

        def col(x: np.ndarray) -> np.ndarray:
            return x.astype(_F32)[:, None, None]

        un = dx * col(ct / a[sel]) + dy * col(st / a[sel])
        vn = dy * col(ct / b[sel]) - dx * col(st / b[sel])
        if np.any(bend[sel]):
            vn -= col(bend[sel] * a[sel] / b[sel]) * (un * un)
        if box:
            rho = np.maximum(np.abs(un), np.abs(vn))
        else:
            rho = un * un + vn * vn
        cand = rho < col(rlim[sel])
        cand &= (gy >= 0) & (gy < h)
        cand &= (gx >= 0) & (gx < w)
        counts = cand.sum(axis=(1, 2))
        obj = np.repeat(sel, counts)
        gidx = (gy * np.int32(w) + gx)[cand]
        un_c = un[cand]
        vn_c = vn[cand]
        rho_c = rho[cand] if box else np.sqrt(rho[cand])
        if table is not None:  # radius R(angle): linear interpolation in a per-object table
            ax = np.abs(un_c) + np.abs(vn_c) + _F32(1e-12)
            pa = vn_c / ax
            pa = np.where(un_c < 0, np.copysign(_F32(2), vn_c) - pa, pa)
            t = (pa + _F32(2)) * _F32(_ANGLE_BINS / 4)
            t0 = np.minimum(t.astype(np.intp), _ANGLE_BINS - 1)
            frac = t - t0
            flat = obj * (_ANGLE_BINS + 1) + t0
            lo = table.take(flat)
            hi = table.take(flat + 1)
            s_c = 1.0 - rho_c / (lo + (hi - lo) * frac)
        else:
            s_c = 1.0 - rho_c
        keep = s_c > 0
        obj = obj[keep]
        q = np.round((s_c[keep].astype(np.float64) + prio[obj]) * 2**20).astype(np.int64)
        idx_all.append(gidx[keep])
        key_all.append((q << 24) | (obj + 1))
        if local:
            un_all.append(un_c[keep])
            vn_all.append(vn_c[keep])
    if idx_all:
        idx = np.concatenate(idx_all)
        key = np.concatenate(key_all)
        np.maximum.at(canvas, idx, key)
    lab = (canvas & (2**24 - 1)).astype(np.int64)
    depth = np.zeros(h * w, _F32)
    fg = lab > 0
    depth[fg] = ((canvas[fg] >> 24) / 2**20 - prio[lab[fg] - 1]).astype(_F32)
    lab = lab.reshape(shape)
    depth = depth.reshape(shape)
    if not local:
        return lab, depth
    un_img = np.zeros(h * w, _F32)
    vn_img = np.zeros(h * w, _F32)
    if idx_all:
        win = canvas[idx] == key
        un_img[idx[win]] = np.concatenate(un_all)[win]
        vn_img[idx[win]] = np.concatenate(vn_all)[win]
    return lab, depth, un_img.reshape(shape), vn_img.reshape(shape)


def _place(
    rng: np.random.Generator,
    shape: tuple[int, int],
    radius: np.ndarray,
    sep: float,
    cluster_frac: float = 0.0,
    cluster_scale: float = 1.0,
    margin: float = 0.4,
    rounds: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Centres for objects of radii ``r``, kept ``sep * (r_i + r_j)`` apart (``sep < 1``: overlap).

    A mixture of a uniform and a clustered (Thomas) point process, thinned so that no two centres
    are too close (random sequential rounds of Matern-II thinning). Centres may lie up to
    ``margin * r`` outside the image, so objects are cut by the border as in real tiles. Returns the
    indices of the accepted radii and their ``(y, x)`` centres.
    """
    h, w = shape
    n = len(radius)
    if n == 0:
        return np.zeros(0, np.intp), np.zeros((0, 2))
    pts = np.empty((n, 2))
    n_cl = rng.binomial(n, cluster_frac)
    pad = margin * radius
    pts[:, 0] = rng.uniform(-pad, h - 1 + pad)
    pts[:, 1] = rng.uniform(-pad, w - 1 + pad)
    if n_cl:
        n_par = max(1, int(n_cl / rng.uniform(3, 12)))
        par = np.column_stack([rng.uniform(0, h, n_par), rng.uniform(0, w, n_par)])
        which = rng.integers(0, n_par, n_cl)
        pts[:n_cl] = par[which] + rng.normal(0, cluster_scale, (n_cl, 2))
        pts[:n_cl, 0] = np.clip(pts[:n_cl, 0], -pad[:n_cl], h - 1 + pad[:n_cl])
        pts[:n_cl, 1] = np.clip(pts[:n_cl, 1], -pad[:n_cl], w - 1 + pad[:n_cl])
    rmax = float(radius.max())
    accepted = np.zeros(0, np.intp)
    batches = np.array_split(rng.permutation(n), rounds)
    for batch in batches:
        if len(batch) == 0:
            continue
        cand = batch
        if len(accepted):
            t_old = cKDTree(pts[accepted])
            t_new = cKDTree(pts[cand])
            dm = t_new.sparse_distance_matrix(t_old, 2 * sep * rmax, output_type="ndarray")
            bad = dm["v"] < sep * (radius[cand[dm["i"]]] + radius[accepted[dm["j"]]])
            ok = np.ones(len(cand), bool)
            ok[dm["i"][bad]] = False
            cand = cand[ok]
        if len(cand) > 1:
            pairs = cKDTree(pts[cand]).query_pairs(2 * sep * rmax, output_type="ndarray")
            if len(pairs):
                i, j = pairs[:, 0], pairs[:, 1]
                d = np.hypot(*(pts[cand[i]] - pts[cand[j]]).T)
                hit = d < sep * (radius[cand[i]] + radius[cand[j]])
                mark = rng.random(len(cand))
                i, j = i[hit], j[hit]
                loser = np.where(mark[i] > mark[j], i, j)
                ok = np.ones(len(cand), bool)
                ok[loser] = False
                cand = cand[ok]
        accepted = np.concatenate([accepted, cand])
    return accepted, pts[accepted]


def _harmonics(
    rng: Rng, n: int, strength: float | np.ndarray, k: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Random radius harmonics (orders 2..k+1) decaying with order."""
    orders = np.arange(2, k + 2)
    amp = np.abs(rng.normal(0, 1, (n, k))) * (np.asarray(strength).reshape(-1, 1) / orders**1.3)
    phase = rng.uniform(0, 2 * np.pi, (n, k))
    return amp, phase


# ----------------------------------------------------------------------------------------------
# Fluorescence microscopy
# ----------------------------------------------------------------------------------------------


def _nucleus_shapes(rng: np.random.Generator, n: int, r: np.ndarray) -> dict:
    """Semi-axes, angle, bend and harmonics for ``n`` nuclei of equivalent radius ``r``."""
    aspect_lo = rng.uniform(0.5, 0.9)
    q = rng.uniform(aspect_lo, 1.0, n)
    theta = rng.uniform(0, np.pi, n)
    if rng.random() < 0.3:  # locally aligned nuclei (confluent cultures, tissue)
        theta = rng.uniform(0, np.pi) + rng.normal(0, 0.35, n)
    bend = rng.normal(0, 0.03, n)
    p_kidney = rng.uniform(0, 0.35)
    kid = rng.random(n) < p_kidney
    bend[kid] = rng.uniform(0.1, 0.3, kid.sum()) * rng.choice([-1, 1], kid.sum())
    strength = rng.uniform(0.02, 0.16) * rng.uniform(0.5, 1.5, n)
    amp, phase = _harmonics(rng, n, strength)
    lobed = rng.random(n) < rng.uniform(0, 0.08)
    amp[lobed, rng.integers(0, 3)] += rng.uniform(0.06, 0.14, lobed.sum())
    return {
        "a": r / np.sqrt(q),
        "b": r * np.sqrt(q),
        "theta": theta,
        "bend": bend,
        "amp": amp,
        "phase": phase,
    }


def _finish_fluorescence(
    rng: np.random.Generator,
    focus: np.ndarray,
    blurred: np.ndarray | None,
    d_mean: float,
) -> np.ndarray:
    """Optics and camera: focus blur, background, illumination, noise, dtype and range."""
    h, w = focus.shape
    side = max(h, w)
    # Detection PSF / focus. Most images sharp-ish, some clearly out of focus.
    sigma = _loguniform(rng, 0.4, 1.6) * (1 + 0.5 * min(d_mean, 40) / 40)
    if rng.random() < 0.15:
        sigma *= rng.uniform(1.5, 3.0)
    img = _blur(focus, sigma)
    if blurred is not None:
        img += _blur(blurred, max(sigma * 2.5, rng.uniform(0.08, 0.25) * d_mean))
    # Background: camera/medium offset plus smooth autofluorescence, relative to a nucleus ~1.
    bg = _loguniform(rng, 0.01, 0.8) if rng.random() < 0.75 else _loguniform(rng, 0.002, 0.02)
    haze = bg * (1 + 0.3 * _noise(rng, (h, w), side / rng.uniform(1.5, 4)))
    img += np.maximum(haze, 0)
    # Uneven illumination (vignetting and a smooth field).
    yy = (np.arange(h, dtype=_F32) - rng.uniform(0.2, 0.8) * h) / side
    xx = (np.arange(w, dtype=_F32) - rng.uniform(0.2, 0.8) * w) / side
    vign = rng.uniform(0, 1.2) * (yy[:, None] ** 2 + xx[None, :] ** 2)
    illum = np.exp(rng.uniform(0, 0.25) * _noise(rng, (h, w), side / 2) - vign)
    img *= illum
    # Shot noise (Gaussian approximation of Poisson) plus read noise.
    read = _loguniform(rng, 0.002, 0.04)
    if rng.random() < 0.85:  # bright enough for the Gaussian approximation of Poisson noise
        photons = _loguniform(rng, 25, 3000)
        std = np.sqrt(np.maximum(img, 0) / photons + read**2)
        img += std * rng.standard_normal((h, w), dtype=_F32)
    else:  # photon-starved: exact Poisson counts, then read noise
        photons = _loguniform(rng, 3, 25)
        img = rng.poisson(np.maximum(img, 0) * photons).astype(_F32) / _F32(photons)
        img += read * rng.standard_normal((h, w), dtype=_F32)
    # Camera range: uint8 with anything from a very low to a saturating fill, or uint16 with a low
    # fill (12-bit cameras in 16-bit files, sCMOS offsets).
    u = rng.random()
    if u < 0.55:
        dtype, top, offset = np.uint8, 255, 0.0
        scale = _loguniform(rng, 12, 230) / (1 + bg)
    elif u < 0.8:
        dtype, top = np.uint16, 4095
        offset = float(rng.choice([0, 100, 200]))
        scale = _loguniform(rng, 150, 3000) / (1 + bg)
    else:
        dtype, top = np.uint16, 65535
        offset = float(rng.choice([0, 100, 500, 1000]))
        scale = _loguniform(rng, 300, 25000) / (1 + bg)
    img = img * _F32(scale) + _F32(offset)
    np.clip(np.round(img), 0, top, out=img)
    return img.astype(dtype)


def _nuclear_texture(
    rng: Rng,
    shape: Shape,
    d: float,
    fine: np.ndarray | None = None,
    coarse: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chromatin speckle (multiplicative), bright foci and dark nucleoli fields for diameter d.

    ``fine`` / ``coarse`` may be fields already made for other, disjoint pixels (cytoplasm):
    reusing them there is invisible and saves time.
    """
    if fine is None:
        fine = _noise(rng, shape, float(np.clip(d / 16, 0.8, 5.0)))
    if coarse is None:
        coarse = _noise(rng, shape, max(d / 5, 2.0))
    spots = _noise(rng, shape, float(np.clip(d / 9, 1.2, 8.0)))
    speckle = 0.65 * fine + 0.35 * coarse
    foci = np.clip(spots - 1.3, 0, None)
    nucleoli = np.clip(-spots - 1.5, 0, 1)
    return speckle, foci, nucleoli


def _debris(rng: np.random.Generator, shape: tuple[int, int], level: float) -> np.ndarray:
    """Small unlabelled specks (dust, fragments) as impulses; blurred later with the image."""
    h, w = shape
    out = np.zeros(shape, _F32)
    n = rng.poisson(rng.uniform(0, 2) * h * w / 65536)
    if n:
        ys = rng.integers(0, h, n)
        xs = rng.integers(0, w, n)
        out[ys, xs] = level * _loguniform(rng, 0.3, 4, n) * rng.uniform(2, 6, n)
    return out


def _make_nuclei(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    h, w = shape
    short = min(h, w)
    d_hi = min(100.0, 0.45 * short)
    d_lo = min(7.0, d_hi)
    d = float(_loguniform(rng, d_lo, d_hi))
    r_mean = d / 2
    regime = rng.random()
    if regime < 0.3:
        coverage = rng.uniform(0.03, 0.15)
    elif regime < 0.7:
        coverage = rng.uniform(0.15, 0.35)
    else:
        coverage = rng.uniform(0.35, 0.65)
    sep = rng.uniform(0.65, 1.05) if regime >= 0.3 else rng.uniform(0.9, 1.3)
    n_target = int(np.clip(coverage * h * w / (np.pi * r_mean**2), 1, 4000))
    n_cand = int(n_target * rng.uniform(1.1, 2.5)) + 1
    cv = rng.uniform(0.08, 0.28)
    r = r_mean * np.exp(rng.normal(0, cv, n_cand))
    r = np.maximum(r, 2.5)
    keep, pts = _place(
        rng, shape, r, sep, cluster_frac=rng.uniform(0, 0.7), cluster_scale=d * rng.uniform(0.8, 3)
    )
    keep, pts = keep[:n_target], pts[:n_target]
    r = r[keep]
    n = len(r)
    geo = _nucleus_shapes(rng, n, r)
    cy, cx = pts[:, 0], pts[:, 1]
    bright = np.exp(rng.normal(0, rng.uniform(0.12, 0.45), n))
    dim = rng.random(n) < rng.uniform(0, 0.35)
    bright[dim] *= rng.uniform(0.15, 0.5, dim.sum())
    prio = np.zeros(n)
    tex = np.minimum(rng.uniform(0.04, 0.25) * np.exp(rng.normal(0, 0.3, n)), 0.35)
    dome = rng.uniform(0, 0.35, n)
    # Mitotic / apoptotic nuclei: compact, condensed, very bright (often saturated).
    mit = rng.random(n) < rng.uniform(0, 0.08)
    if mit.any():
        k = mit.sum()
        shrink = rng.uniform(0.5, 0.8, k)
        geo["a"][mit] *= shrink * rng.uniform(1.0, 1.4, k)
        geo["b"][mit] *= shrink * rng.uniform(0.6, 1.0, k)
        geo["amp"][mit] *= 2.0
        bright[mit] = rng.uniform(2.5, 7.0, k)
        tex[mit] = rng.uniform(0.2, 0.5, k)
        dome[mit] = rng.uniform(0.3, 0.7, k)
        prio[mit] = 1.0
    # Dividing pairs: two small bright daughters either side of the division axis.
    n_pairs = rng.binomial(n, rng.uniform(0, 0.04))
    if n_pairs:
        parents = rng.choice(n, n_pairs, replace=False)
        ang = rng.uniform(0, np.pi, n_pairs)
        gap = r[parents] * rng.uniform(0.8, 1.7, n_pairs)
        dy, dx = gap * np.sin(ang), gap * np.cos(ang)
        py, px = cy[parents], cx[parents]
        cy = np.concatenate([np.delete(cy, parents), py - dy, py + dy])
        cx = np.concatenate([np.delete(cx, parents), px - dx, px + dx])
        rd = np.tile(r[parents] * rng.uniform(0.5, 0.7, n_pairs), 2)
        qd = np.tile(rng.uniform(0.35, 0.7, n_pairs), 2)
        ad = rd / np.sqrt(qd)
        bd = rd * np.sqrt(qd)
        th = np.tile(ang + np.pi / 2, 2)  # long axis across the division axis
        amp_d, ph_d = _harmonics(rng, 2 * n_pairs, 0.1)
        geo = {
            "a": np.concatenate([np.delete(geo["a"], parents), ad]),
            "b": np.concatenate([np.delete(geo["b"], parents), bd]),
            "theta": np.concatenate([np.delete(geo["theta"], parents), th]),
            "bend": np.concatenate([np.delete(geo["bend"], parents), np.zeros(2 * n_pairs)]),
            "amp": np.concatenate([np.delete(geo["amp"], parents, 0), amp_d]),
            "phase": np.concatenate([np.delete(geo["phase"], parents, 0), ph_d]),
        }
        bright = np.concatenate(
            [np.delete(bright, parents), np.tile(rng.uniform(1.5, 5, n_pairs), 2)]
        )
        tex = np.concatenate([np.delete(tex, parents), np.full(2 * n_pairs, 0.3)])
        dome = np.concatenate([np.delete(dome, parents), np.full(2 * n_pairs, 0.5)])
        prio = np.concatenate([np.delete(prio, parents), np.ones(2 * n_pairs)])
        n = len(cy)
    raw, depth = _paint(shape, cy, cx, priority=prio, **geo)
    min_size = max(4.0, 0.06 * np.pi * r_mean**2)
    lab, src = _clean(raw, min_size)
    idx = src - 1

    def per(values: np.ndarray) -> np.ndarray:  # per-pixel lookup of a per-object property
        return np.concatenate([[0.0], values[idx]]).astype(_F32)[lab]

    fg = lab > 0
    r_eff = np.sqrt(geo["a"] * geo["b"])
    edge = rng.uniform(0.6, 2.5)
    prof = _smoothstep(depth * per(r_eff) / edge) * (1 - per(dome) * (1 - depth) ** 2)
    speckle, foci, nucleoli = _nuclear_texture(rng, shape, d)
    sig = per(bright) * np.maximum(1 + per(tex) * speckle, 0.15)
    sig *= 1 - rng.uniform(0, 0.6) * nucleoli
    sig += per(bright) * rng.uniform(0, 0.6) * foci
    sig *= prof
    # Seams between touching nuclei: sometimes visible as a darker line, sometimes not at all.
    seams = _boundaries(lab, inner_only=True)
    if seams.any():
        sig *= 1 - rng.uniform(0, 0.6) * seams
    sig[~fg] = 0
    # A faint cytoplasm glow around nuclei (autofluorescence / DNA stain in the cytoplasm).
    if rng.random() < 0.5:
        glow = _blur(fg.astype(_F32), d * rng.uniform(0.3, 0.8))
        sig += rng.uniform(0.02, 0.12) * glow * (1 + 0.4 * _noise(rng, shape, d / 2))
    sig += _debris(rng, shape, 1.0)
    # Out-of-focus nuclei go to a second, more blurred layer.
    blurred = None
    p_oof = rng.uniform(0, 0.3) if rng.random() < 0.4 else 0.0
    if p_oof > 0 and len(idx):
        oof_obj = rng.random(len(idx)) < p_oof
        oof = np.concatenate([[False], oof_obj])[lab]
        blurred = np.where(oof, sig, 0).astype(_F32)
        sig = np.where(oof, 0, sig).astype(_F32)
    image = _finish_fluorescence(rng, sig.astype(_F32), blurred, d)
    levels = (lab,)
    groups = _groups(lab)
    if groups.max() < lab.max():
        levels = (lab, groups)
    return image, levels


def _make_cells(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    h, w = shape
    short = min(h, w)
    d_nuc = float(_loguniform(rng, min(6.0, 0.1 * short), min(45.0, 0.2 * short)))
    ratio = rng.uniform(1.5, 3.0)  # cell radius / nucleus radius
    rc_mean = d_nuc / 2 * ratio
    coverage = rng.uniform(0.15, 0.9)
    sep = rng.uniform(0.55, 0.95)
    n_target = int(np.clip(coverage * h * w / (np.pi * rc_mean**2), 1, 2000))
    n_cand = int(n_target * rng.uniform(1.2, 2.5)) + 1
    rc = rc_mean * np.exp(rng.normal(0, rng.uniform(0.1, 0.3), n_cand))
    keep, pts = _place(
        rng,
        shape,
        rc,
        sep,
        cluster_frac=rng.uniform(0.2, 0.9),
        cluster_scale=rc_mean * rng.uniform(1, 3),
        margin=0.6,
    )
    keep, pts = keep[:n_target], pts[:n_target]
    rc = rc[keep]
    n = len(rc)
    # Cells: irregular, often elongated, with protrusions.
    qc = rng.uniform(rng.uniform(0.3, 0.8), 1.0, n)
    ac, bc = rc / np.sqrt(qc), rc * np.sqrt(qc)
    thc = rng.uniform(0, np.pi, n)
    amp_c, ph_c = _harmonics(rng, n, rng.uniform(0.1, 0.45) * rng.uniform(0.5, 1.5, n), k=6)
    bend_c = rng.normal(0, 0.12, n)
    raw_c, depth_c = _paint(
        shape, pts[:, 0], pts[:, 1], ac, bc, thc, bend=bend_c, amp=amp_c, phase=ph_c
    )
    # Nuclei: one per cell (a few binucleate), off-centre, roughly aligned with the cell.
    rn = np.minimum(rc / ratio * np.exp(rng.normal(0, 0.12, n)), 0.75 * np.minimum(ac, bc))
    geo = _nucleus_shapes(rng, n, rn)
    geo["theta"] = thc + rng.normal(0, 0.3, n)
    off = rng.uniform(0, 0.35, n) * np.minimum(ac, bc)
    off_ang = rng.uniform(0, 2 * np.pi, n)
    ny = pts[:, 0] + off * np.sin(off_ang)
    nx = pts[:, 1] + off * np.cos(off_ang)
    owner = np.arange(n)
    binuc = np.nonzero(rng.random(n) < rng.uniform(0, 0.06))[0]
    if len(binuc):
        shift = 0.75 * rn[binuc]
        dirx, diry = np.cos(thc[binuc]), np.sin(thc[binuc])
        ny = np.concatenate([ny, ny[binuc] + shift * diry])
        nx = np.concatenate([nx, nx[binuc] + shift * dirx])
        ny[binuc] -= shift * diry
        nx[binuc] -= shift * dirx
        for key in geo:
            extra = geo[key][binuc]
            if key in ("a", "b"):
                geo[key][binuc] *= 0.72
                extra = extra * 0.72
            geo[key] = np.concatenate([geo[key], extra])
        owner = np.concatenate([owner, binuc])
    raw_n, depth_n = _paint(shape, ny, nx, **geo)
    # Nesting: nucleus pixels belong to their own cell; each cell keeps the piece with its nucleus.
    nuc, nsrc = _clean(raw_n, max(4.0, 0.1 * np.pi * (d_nuc / 2) ** 2))
    in_nuc = nuc > 0
    cell_raw = raw_c.copy()
    cell_raw[in_nuc] = owner[nsrc[nuc[in_nuc].astype(np.int64) - 1] - 1] + 1
    cells, csrc = _clean(cell_raw, max(6.0, 0.05 * np.pi * rc_mean**2), prefer=in_nuc)
    nuc[cells == 0] = 0
    nuc, nsrc2 = _clean(nuc, 4.0)
    nsrc = nsrc[nsrc2 - 1] if len(nsrc2) else nsrc2
    clusters = _groups(cells)

    # ---- rendering
    cidx = csrc - 1
    nidx = nsrc - 1

    def per_cell(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], values[cidx]]).astype(_F32)[cells]

    def per_nuc(values: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], values[nidx]]).astype(_F32)[nuc]

    cfg = cells > 0
    # Cell depth: the painted depth where the cell won; inside its nucleus treat it as deep.
    dc = np.where(raw_c == np.concatenate([[0], csrc])[cells], depth_c, 0.6).astype(_F32)
    cyto_b = np.exp(rng.normal(0, rng.uniform(0.15, 0.45), n))
    edge = rng.uniform(0.8, 3.0)
    thick = rng.uniform(0.15, 0.7)
    prof_c = _smoothstep(dc * per_cell(rc) / edge) * (
        0.35 + 0.65 * np.clip(dc / thick, 0, 1) ** 0.7
    )
    gran = _noise(rng, shape, rng.uniform(1.0, 3.0))
    mid = _noise(rng, shape, rc_mean * rng.uniform(0.2, 0.6))
    cyto = per_cell(cyto_b) * prof_c * np.maximum(1 + rng.uniform(0.08, 0.3) * (gran + mid), 0.1)
    if rng.random() < 0.35:  # bright membranes / cortex outline cell borders
        memb = _blur(_boundaries(cells).astype(_F32), 0.7) * cfg
        cyto += rng.uniform(0.2, 0.8) * memb * per_cell(cyto_b)
    elif rng.random() < 0.5:  # or touching cells meet at a dim seam
        cyto *= 1 - rng.uniform(0.2, 0.6) * _boundaries(cells, inner_only=True)
    speckle, foci, nucleoli = _nuclear_texture(rng, shape, d_nuc, gran, mid)
    rn_eff = np.sqrt(geo["a"] * geo["b"])
    wn = _smoothstep(depth_n * per_nuc(rn_eff) / rng.uniform(0.6, 2.0)) * (nuc > 0)
    host = per_nuc(cyto_b[owner])
    if rng.random() < 0.5:  # nuclear + cytoplasmic stain in one channel: bright nuclei
        nb = host * rng.uniform(1.6, 4.0) * per_nuc(np.exp(rng.normal(0, 0.2, len(owner))))
        nterm = nb * np.maximum(1 + rng.uniform(0.1, 0.35) * speckle, 0.2) + nb * 0.4 * foci
    else:  # cytoplasmic stain only: nuclei are dark holes with faint nucleoli texture
        nb = host * rng.uniform(0.1, 0.55)
        nterm = nb * np.maximum(1 + 0.3 * speckle, 0.2) * (1 - 0.5 * nucleoli)
    sig = cyto * (1 - wn) + nterm * wn
    sig[~cfg] = 0
    sig += _debris(rng, shape, float(np.median(cyto_b)))
    sig /= max(float(np.percentile(sig[cfg], 99)) if cfg.any() else 1.0, 1e-3)
    image = _finish_fluorescence(rng, sig.astype(_F32), None, d_nuc)
    return image, (nuc, cells, clusters)


# ----------------------------------------------------------------------------------------------
# CT
# ----------------------------------------------------------------------------------------------

# name, u, v, su, sv, angle (deg), kind; (u, v) in body-normalised coordinates (v: anterior -1 ->
# posterior +1), (su, sv) as fractions of the body semi-axes.
_CT_TEMPLATES = {
    "abdomen": [
        ("liver", -0.40, -0.12, 0.42, 0.55, 20, "liver"),
        ("spleen", 0.60, 0.22, 0.15, 0.30, -40, "spleen"),
        ("stomach", 0.32, -0.38, 0.24, 0.20, -20, "gas"),
        ("kidney_r", -0.32, 0.42, 0.11, 0.20, 20, "kidney"),
        ("kidney_l", 0.32, 0.42, 0.11, 0.20, -20, "kidney"),
        ("aorta", 0.05, 0.36, 0.055, 0.0, 0, "vessel"),
        ("ivc", -0.12, 0.34, 0.06, 0.045, 0, "vessel"),
        ("vertebra", 0.0, 0.62, 0.12, 0.0, 0, "vertebra"),
        ("muscle_r", -0.21, 0.74, 0.16, 0.12, 10, "muscle"),
        ("muscle_l", 0.21, 0.74, 0.16, 0.12, -10, "muscle"),
        ("gallbladder", -0.30, 0.05, 0.07, 0.06, 30, "fluid"),
    ],
    "thorax": [
        ("lung_r", -0.46, 0.0, 0.34, 0.70, 0, "lung"),
        ("lung_l", 0.46, 0.02, 0.32, 0.68, 0, "lung"),
        ("heart", 0.10, -0.22, 0.28, 0.38, 30, "heart"),
        ("aorta_d", 0.12, 0.44, 0.06, 0.0, 0, "vessel"),
        ("aorta_a", 0.02, -0.38, 0.065, 0.0, 0, "vessel"),
        ("vertebra", 0.0, 0.68, 0.11, 0.0, 0, "vertebra"),
        ("sternum", 0.0, -0.86, 0.07, 0.04, 0, "bone"),
        ("scapula_r", -0.62, 0.74, 0.20, 0.045, -30, "bone"),
        ("scapula_l", 0.62, 0.74, 0.20, 0.045, 30, "bone"),
        ("esophagus", 0.04, 0.30, 0.03, 0.0, 0, "gas"),
    ],
    "pelvis": [
        ("bladder", 0.0, -0.25, 0.24, 0.22, 0, "fluid"),
        ("rectum", 0.0, 0.42, 0.08, 0.0, 0, "bowel"),
        ("femur_r", -0.62, 0.05, 0.12, 0.0, 0, "bone"),
        ("femur_l", 0.62, 0.05, 0.12, 0.0, 0, "bone"),
        ("ilium_r", -0.45, 0.48, 0.26, 0.07, -40, "bone"),
        ("ilium_l", 0.45, 0.48, 0.26, 0.07, 40, "bone"),
        ("muscle_r", -0.35, -0.18, 0.20, 0.18, 20, "muscle"),
        ("muscle_l", 0.35, -0.18, 0.20, 0.18, -20, "muscle"),
    ],
}


def _ct_hu(rng: np.random.Generator, kind: str, contrast: bool) -> float:
    table = {
        "liver": (50, 70) if not contrast else (90, 120),
        "spleen": (40, 55) if not contrast else (100, 130),
        "kidney": (28, 40) if not contrast else (150, 230),
        "vessel": (35, 50) if not contrast else (150, 320),
        "heart": (35, 50) if not contrast else (120, 280),
        "muscle": (45, 60),
        "fluid": (0, 18),
        "lung": (-880, -780),
        "gas": (-950, -850),
        "bowel": (10, 40),
        "bone": (250, 450),
        "vertebra": (200, 350),
        "soft": (-20, 130),
    }
    lo, hi = table[kind]
    return float(rng.uniform(lo, hi))


def _make_ct(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    h, w = shape
    short = min(h, w)
    region = rng.choice(["abdomen", "thorax", "pelvis", "generic"], p=[0.4, 0.3, 0.15, 0.15])
    contrast = rng.random() < 0.5
    zoom = _loguniform(rng, 0.75, 1.35)
    bx = 0.45 * short * zoom * rng.uniform(0.9, 1.1) * (w / short) ** 0.5
    by = min(bx * rng.uniform(0.6, 0.85), 0.62 * h * zoom)
    cy = h * (0.47 + rng.normal(0, 0.03))
    cx = w * (0.5 + rng.normal(0, 0.03))
    phi = rng.normal(0, 0.08)
    flip = -1.0 if rng.random() < 0.2 else 1.0
    body_amp, body_ph = _harmonics(rng, 1, rng.uniform(0.01, 0.05))
    body_lab, s_body = _paint(shape, [cy], [cx], [bx], [by], [phi], amp=body_amp, phase=body_ph)
    body = body_lab > 0
    t_fat = rng.uniform(0.03, 0.14)
    t_musc = rng.uniform(0.02, 0.06)

    entries = list(_CT_TEMPLATES.get(region, []))
    for _ in range(rng.integers(0 if region != "generic" else 3, 4 if region != "generic" else 9)):
        kind = "bowel" if region in ("abdomen", "pelvis") and rng.random() < 0.6 else "soft"
        r = rng.uniform(0.05, 0.16)
        entries.append(
            (
                "extra",
                rng.uniform(-0.55, 0.55),
                rng.uniform(-0.6, 0.35),
                r,
                r * rng.uniform(0.6, 1.0),
                rng.uniform(0, 180),
                kind,
            )
        )
    if region == "thorax":  # ribs along the inner chest wall
        m = rng.integers(6, 14)
        ang = np.sort(rng.uniform(0, 2 * np.pi, m))
        for t in ang:
            if abs(np.sin(t)) > 0.97:
                continue
            rad = 1 - t_fat - t_musc - 0.05
            entries.append(
                (
                    "rib",
                    rad * np.cos(t),
                    rad * np.sin(t),
                    rng.uniform(0.035, 0.06),
                    rng.uniform(0.025, 0.04),
                    float(np.degrees(t)) + 90,
                    "bone",
                )
            )
    keep = [e for e in entries if e[6] in ("vertebra", "bone", "lung") or rng.random() < 0.9]
    if not keep:
        keep = entries[:1]
    m = len(keep)
    u = np.array([e[1] for e in keep]) * flip + rng.normal(0, 0.03, m)
    v = np.array([e[2] for e in keep]) + rng.normal(0, 0.03, m)
    su = np.array([e[3] for e in keep]) * rng.uniform(0.85, 1.15, m)
    sv = np.array([e[4] for e in keep]) * rng.uniform(0.85, 1.15, m)
    circ = sv == 0
    ang = np.radians(np.array([e[5] for e in keep]) * flip) + rng.normal(0, 0.12, m)
    kinds = [e[6] for e in keep]
    a_px = su * bx
    b_px = np.where(circ, su * bx, sv * by)
    oy = cy + u * bx * np.sin(phi) + v * by * np.cos(phi)
    ox = cx + u * bx * np.cos(phi) - v * by * np.sin(phi)
    bend = np.array([0.2 * flip * np.sign(e[1]) if e[6] == "lung" else 0.0 for e in keep])
    bend += np.array([0.25 if e[6] == "kidney" else 0.0 for e in keep]) * np.sign(u)
    amp, ph = _harmonics(rng, m, np.where(circ, 0.01, rng.uniform(0.02, 0.12, m)))
    bony = np.array([k in ("bone", "vertebra") for k in kinds])
    area = a_px * b_px
    prio = 1 - area / area.max() + 2.0 * bony + 1.0 * np.array([k == "vessel" for k in kinds])
    raw, depth = _paint(
        shape, oy, ox, a_px, b_px, phi + ang, bend=bend, amp=amp, phase=ph, priority=prio
    )
    inner = s_body > t_fat + t_musc
    allowed = np.where(bony[np.maximum(raw - 1, 0)], body, inner) & (raw > 0)
    raw[~allowed] = 0
    organs, src = _clean(raw, max(6.0, 2e-4 * h * w))
    idx = src - 1

    # ---- Hounsfield units
    hu = np.full(shape, -1000.0, _F32)
    soft = rng.uniform(25, 45)
    hu[body] = soft
    fat_hu = rng.uniform(-115, -85)
    sub = body & (s_body < t_fat)
    hu[sub] = fat_hu
    musc = body & (s_body >= t_fat) & (s_body < t_fat + t_musc)
    hu[musc] = rng.uniform(45, 60)
    if region != "thorax":
        fatfield = _noise(rng, shape, bx * rng.uniform(0.03, 0.08))
        visceral = inner & (fatfield > rng.uniform(0.3, 1.5))
        hu[visceral] = fat_hu + 15
    hu_obj = np.array([_ct_hu(rng, k, contrast) for k in kinds])
    extra = np.array([k == "soft" for k in kinds])  # generic lesions / masses, mostly visible
    hu_obj[extra] = soft + rng.choice([-1, 1], extra.sum()) * rng.uniform(12, 90, extra.sum())
    kind_id = {k: i for i, k in enumerate(sorted(set(kinds)))}
    kcode = np.concatenate([[-1], [kind_id[kinds[i]] for i in idx]])[organs]
    dep = depth.copy()
    fg = organs > 0
    hu = np.where(fg, np.concatenate([[0.0], hu_obj[idx]]).astype(_F32)[organs], hu)
    organ_tex = _noise(rng, shape, rng.uniform(1.5, 4))
    hu += fg * rng.uniform(2, 10) * organ_tex
    for name, code in kind_id.items():
        sel = kcode == code
        if not sel.any():
            continue
        if name in ("bone", "vertebra"):  # cortical rim, cancellous core
            rim = sel & (dep < rng.uniform(0.12, 0.3))
            hu[rim] = rng.uniform(700, 1300)
            hu[sel] += 60 * organ_tex[sel]
        elif name == "lung":  # vessels and bronchi as bright dots and branches
            vessels = _noise(rng, shape, rng.uniform(1.2, 2.5)) > rng.uniform(1.8, 2.4)
            hu[sel & vessels] = rng.uniform(-100, 40)
        elif name == "kidney":  # medulla darker than cortex, fatty hilum
            hu[sel & (dep > 0.45)] -= rng.uniform(20, 90) if contrast else 5
        elif name in ("gas", "bowel"):  # wall around gas / fluid / contrast content
            content = rng.choice([-950.0, 10.0, 250.0], p=[0.5, 0.3, 0.2])
            if name == "gas":
                content = -950.0
            core = sel & (dep > rng.uniform(0.15, 0.35))
            hu[core] = content + (25 * organ_tex[core] if content > -500 else 0)
    if rng.random() < 0.6:  # patient table below the body
        ty = int(cy + by + rng.uniform(4, 12))
        if ty < h - 2:
            th = int(rng.uniform(2, 5))
            hu[ty : ty + th, max(0, int(cx - 1.2 * bx)) : int(cx + 1.2 * bx)] = rng.uniform(
                -300, 300
            )
    # Partial volume blur, correlated noise, streaks from dense bone.
    hu = _blur(hu, rng.uniform(0.5, 1.2))
    noise = _noise(rng, shape, rng.uniform(0.8, 2.0))
    hu += rng.uniform(5, 35) * noise
    hu += _ct_streaks(rng, shape, oy[bony], ox[bony], body)
    # Window to uint8, or raw HU + 1024 in uint16.
    if rng.random() < 0.2:
        image = np.clip(np.round(hu + 1024), 0, 4095).astype(np.uint16)
    else:
        if rng.random() < 0.85:
            level, width = rng.uniform(20, 70), rng.uniform(250, 500)
        else:
            level, width = rng.uniform(-650, -400), rng.uniform(1200, 1800)
        lo = level - width / 2
        image = np.clip(np.round((hu - lo) / width * 255), 0, 255).astype(np.uint8)
    return image, (organs, body.astype(np.uint32))


def _ct_streaks(
    rng: Rng, shape: Shape, ys: np.ndarray, xs: np.ndarray, body: np.ndarray
) -> np.ndarray:
    """Radial streaks (photon starvation / beam hardening) from a few dense points."""
    h, w = shape
    out = np.zeros(shape, _F32)
    if rng.random() < 0.35 or len(ys) == 0:
        return out
    yy = np.arange(h, dtype=_F32)[:, None]
    xx = np.arange(w, dtype=_F32)[None, :]
    strength = _loguniform(rng, 10, 120)
    for i in rng.choice(len(ys), min(len(ys), 2), replace=False):
        ang = np.arctan2(yy - ys[i], xx - xs[i])
        bins = 720
        prof = np.zeros(bins, _F32)
        k = rng.integers(4, 16)
        pos = rng.integers(0, bins // 2, k)
        prof[pos] = rng.normal(0, 1, k).astype(_F32)
        prof[pos + bins // 2] = prof[pos]
        prof = ndi.gaussian_filter1d(prof, rng.uniform(0.6, 1.5), mode="wrap")
        prof /= max(float(np.abs(prof).max()), 1e-6)
        lut = ((ang + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
        dist = np.hypot(yy - ys[i], xx - xs[i])
        out += strength * prof[lut] / (1 + dist / (0.3 * min(h, w)))
    return out * body


# ----------------------------------------------------------------------------------------------
# Aerial
# ----------------------------------------------------------------------------------------------

_FIELD_COLOURS = np.array(
    [
        (0.30, 0.42, 0.20),
        (0.40, 0.50, 0.25),
        (0.22, 0.35, 0.18),
        (0.35, 0.45, 0.22),
        (0.70, 0.62, 0.40),
        (0.76, 0.70, 0.48),
        (0.60, 0.55, 0.35),
        (0.50, 0.40, 0.30),
        (0.42, 0.33, 0.25),
        (0.60, 0.50, 0.38),
        (0.35, 0.28, 0.22),
    ],
    _F32,
)
_ROOF_COLOURS = np.array(
    [
        (0.62, 0.32, 0.24),
        (0.55, 0.28, 0.22),
        (0.28, 0.28, 0.30),
        (0.62, 0.62, 0.62),
        (0.42, 0.32, 0.26),
        (0.82, 0.82, 0.80),
        (0.40, 0.48, 0.56),
        (0.32, 0.42, 0.36),
        (0.48, 0.46, 0.44),
    ],
    _F32,
)


def _jitter_colours(rng: Rng, base: np.ndarray, n: int, spread: float = 0.08) -> np.ndarray:
    """``n`` colours drawn from ``base`` with random brightness and a slight tint."""
    pick = base[rng.integers(0, len(base), n)]
    gain = np.exp(rng.normal(0, spread, (n, 1)))
    tint = np.exp(rng.normal(0, spread / 3, (n, 3)))
    return np.clip(pick * gain * tint, 0, 1).astype(_F32)


def _bsp_fields(rng: Rng, shape: Shape, n_fields: int, theta0: float) -> np.ndarray:
    """Partition the image into roughly rectangular fields by recursive straight cuts."""
    h, w = shape
    lab = np.ones(shape, np.int64)
    ca, sa = math.cos(theta0), math.sin(theta0)
    areas = [0, h * w]
    boxes = [(0, 0, 0, 0), (0, h, 0, w)]

    def bbox(mask: np.ndarray, y0: int, x0: int) -> tuple[int, int, int, int]:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        return y0 + rows[0], y0 + rows[-1] + 1, x0 + cols[0], x0 + cols[-1] + 1

    for _ in range(n_fields - 1):
        ar = np.array(areas[1:], np.float64)
        c = int(rng.choice(len(ar), p=ar**2 / (ar**2).sum())) + 1
        y0, y1, x0, x1 = boxes[c]
        sub = lab[y0:y1, x0:x1]
        m = sub == c
        ys = np.arange(y0, y1, dtype=_F32)[:, None]
        xs = np.arange(x0, x1, dtype=_F32)[None, :]
        u = xs * ca + ys * sa
        v = ys * ca - xs * sa
        um, vm = u[m], v[m]
        if um.size < 50:
            continue
        along_u = (um.max() - um.min()) * rng.uniform(0.7, 1.3) > (vm.max() - vm.min())
        jit = rng.normal(0, 0.06)
        if along_u:
            proj = u * math.cos(jit) + v * math.sin(jit)
        else:
            proj = v * math.cos(jit) - u * math.sin(jit)
        pm = proj[m]
        cut = pm.min() + (pm.max() - pm.min()) * rng.uniform(0.3, 0.7)
        side = m & (proj > cut)
        k = int(side.sum())
        if k == 0 or k == m.sum():
            continue
        new = len(areas)
        sub[side] = new
        areas.append(k)
        areas[c] -= k
        boxes.append(bbox(side, y0, x0))
        boxes[c] = bbox(m & ~side, y0, x0)
    return lab


def _shade_roofs(
    rng: Rng,
    roof_lab: np.ndarray,
    un: np.ndarray,
    vn: np.ndarray,
    a_obj: np.ndarray,
    b_obj: np.ndarray,
    th_obj: np.ndarray,
    style: np.ndarray,
    sun: tuple[float, float],
) -> np.ndarray:
    """Per-pixel brightness factor of roofs: gable / hip facets lit by the sun, flat roofs."""
    fac = np.ones(roof_lab.shape, _F32)
    fg = roof_lab > 0
    if not fg.any():
        return fac
    i = roof_lab[fg] - 1
    a = a_obj[i]
    b = b_obj[i]
    th = th_obj[i]
    du = a * (1 - np.abs(un[fg]))  # px to the ends
    dv = b * (1 - np.abs(vn[fg]))  # px to the long sides
    # ridge along the longer axis
    long_u = a >= b
    side_sign = np.where(long_u, np.sign(vn[fg]), np.sign(un[fg]))
    end_sign = np.where(long_u, np.sign(un[fg]), np.sign(vn[fg]))
    side_ax = np.where(long_u, th + np.pi / 2, th)
    end_ax = np.where(long_u, th, th + np.pi / 2)
    d_side = np.where(long_u, dv, du)
    d_end = np.where(long_u, du, dv)
    st = style[i]
    use_end = (st == 1) & (d_end < d_side)
    ax = np.where(use_end, end_ax, side_ax)
    sg = np.where(use_end, end_sign, side_sign)
    lit = sg * (np.cos(ax) * sun[1] + np.sin(ax) * sun[0])
    k = rng.uniform(0.12, 0.35)
    f = 1 + k * lit
    flat = st == 2
    f[flat] = 1.0 - 0.12 * (np.minimum(du, dv)[flat] < 1.5)
    fac[fg] = f
    return fac


def _trees(
    rng: Rng, shape: Shape, n: int, r_mean: float, where: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Painted tree crowns ``(lab, depth, un, vn)``, centred on ``where`` pixels if given."""
    h, w = shape
    if where is not None and where.any():
        ys, xs = np.nonzero(where)
        pick = rng.integers(0, len(ys), n)
        cy = ys[pick] + rng.uniform(-0.5, 0.5, n)
        cx = xs[pick] + rng.uniform(-0.5, 0.5, n)
    else:
        cy = rng.uniform(0, h, n)
        cx = rng.uniform(0, w, n)
    r = r_mean * np.exp(rng.normal(0, 0.25, n))
    amp, ph = _harmonics(rng, n, 0.15, k=5)
    return _paint(
        shape,
        cy,
        cx,
        r,
        r * rng.uniform(0.8, 1.0, n),
        rng.uniform(0, np.pi, n),
        amp=amp,
        phase=ph,
        local=True,
    )


def _tree_layer(
    rng: Rng,
    img: np.ndarray,
    crowns: tuple[np.ndarray, ...],
    sun: tuple[float, float],
    shadow_len: float,
    fine: np.ndarray,
) -> np.ndarray:
    """Draw shaded, textured crowns and their shadows into the RGB float image."""
    lab, depth, un, vn = crowns
    fg = lab > 0
    if not fg.any():
        return img
    shadow = _shift(fg, -sun[0] * shadow_len, -sun[1] * shadow_len) & ~fg
    img[shadow] *= rng.uniform(0.45, 0.7)
    col = _jitter_colours(rng, np.array([(0.13, 0.22, 0.10), (0.18, 0.28, 0.12)], _F32), 1)[0]
    light = 0.75 + 0.45 * np.sqrt(np.clip(depth, 0, 1)) + 0.25 * (un * sun[1] + vn * sun[0])
    img[fg] = col[None, :] * (light * (1 + 0.18 * fine))[fg][:, None]
    return img


def _shift(mask: np.ndarray, dy: float, dx: float) -> np.ndarray:
    dy, dx = int(round(dy)), int(round(dx))
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys = slice(max(dy, 0), h + min(dy, 0))
    yd = slice(max(-dy, 0), h + min(-dy, 0))
    xs = slice(max(dx, 0), w + min(dx, 0))
    xd = slice(max(-dx, 0), w + min(-dx, 0))
    out[ys, xs] = mask[yd, xd]
    return out


def _roofs_render(
    rng: Rng,
    img: np.ndarray,
    roof_lab: np.ndarray,
    un: np.ndarray,
    vn: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    th: np.ndarray,
    sun: tuple[float, float],
    height: float,
    fine: np.ndarray,
    group: np.ndarray | None = None,
) -> np.ndarray:
    """Draw roofs (box ``i`` = label ``i + 1``) with sunlit facets and cast shadows."""
    fg = roof_lab > 0
    n = len(a)
    if n == 0 or not fg.any():
        return img
    style = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    big = (a * b) > np.percentile(a * b, 85) * 1.5
    style[big] = 2
    shadow = _shift(fg, -sun[0] * height, -sun[1] * height) & ~fg
    img[shadow] *= rng.uniform(0.45, 0.65)
    if group is None:
        col = _jitter_colours(rng, _ROOF_COLOURS, n)
    else:  # all boxes of one building (L-shapes) share its colour
        col = _jitter_colours(rng, _ROOF_COLOURS, int(group.max()) + 1)[group]
    fac = _shade_roofs(rng, roof_lab, un, vn, a, b, th, style, sun)
    img[fg] = col[roof_lab[fg] - 1] * (fac * (1 + 0.05 * fine))[fg][:, None]
    return img


def _make_aerial(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    if rng.random() < 0.55:
        img, levels = _aerial_rural(rng, shape)
    else:
        img, levels = _aerial_urban(rng, shape)
    h, w = shape
    # Camera: colour balance, haze, slight blur, noise.
    img *= np.exp(rng.normal(0, 0.06, 3)).astype(_F32) * rng.uniform(0.8, 1.2)
    haze = rng.uniform(0, 0.2)
    img = img * (1 - haze) + haze * np.array([0.65, 0.7, 0.78], _F32)
    sigma = rng.uniform(0.3, 1.0)
    if sigma > 0.45:
        img = ndi.gaussian_filter(img, (sigma, sigma, 0), mode="nearest", truncate=3.0)
    img += (rng.uniform(0.004, 0.02) * rng.standard_normal(shape, dtype=_F32))[..., None]
    img *= 255
    np.clip(np.round(img, out=img), 0, 255, out=img)
    image = img.astype(np.uint8)
    return image, levels


def _aerial_rural(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    h, w = shape
    short = min(h, w)
    gsd = _loguniform(rng, 0.5, 2.0)  # pixels per "metre-ish" unit
    theta0 = rng.uniform(0, np.pi)
    n_fields = int(np.clip(h * w / (_loguniform(rng, 60, 220) * gsd) ** 2, 2, 40))
    lab = _bsp_fields(rng, shape, n_fields, theta0)
    yy = np.arange(h, dtype=_F32)[:, None]
    xx = np.arange(w, dtype=_F32)[None, :]
    fine = _noise(rng, shape, 1.2)
    nid = int(lab.max())
    # hedges / tracks between fields
    border = np.zeros(shape, bool)
    if rng.random() < 0.6:
        border = _boundaries(lab)
        if rng.random() < 0.5:
            border = ndi.binary_dilation(border)
    # centre-pivot circles
    pivots = []
    for _ in range(rng.integers(0, 3) if rng.random() < 0.4 else 0):
        rad = rng.uniform(0.12, 0.35) * short
        pcy, pcx = rng.uniform(0, h), rng.uniform(0, w)
        d = np.hypot(yy - pcy, xx - pcx)
        m = d < rad
        nid += 1
        lab[m] = nid
        border &= ~m
        pivots.append((nid, pcy, pcx))
    # roads cut through everything
    road = np.zeros(shape, bool)
    for _ in range(rng.integers(0, 3)):
        ang = rng.uniform(0, np.pi) if rng.random() < 0.5 else theta0 + rng.normal(0, 0.03)
        py, px = rng.uniform(0, h), rng.uniform(0, w)
        dist = (xx - px) * math.sin(ang) - (yy - py) * math.cos(ang)
        along = (xx - px) * math.cos(ang) + (yy - py) * math.sin(ang)
        dist = dist + rng.uniform(0, 0.08) * short * np.sin(along / (short * rng.uniform(0.3, 1)))
        road |= np.abs(dist) < rng.uniform(2, 6) * gsd**0.5
    lab[border] = 0
    lab[road] = nid + 1
    # farm buildings
    n_b = rng.integers(0, 5) if rng.random() < 0.5 else 0
    ba = rng.uniform(4, 12, n_b) * gsd
    bb = ba * rng.uniform(0.35, 0.9, n_b)
    bth = theta0 + rng.choice([0, np.pi / 2], n_b) + rng.normal(0, 0.05, n_b)
    roofs = _paint(
        shape, rng.uniform(0, h, n_b), rng.uniform(0, w, n_b), ba, bb, bth, box=True, local=True
    )
    # trees: rows along field edges / roads, small woods
    r_tree = rng.uniform(2.0, 5.0) * gsd**0.5
    n_t = int(rng.uniform(0, 0.004) * h * w / r_tree)
    edge_sites = _boundaries(lab) | road if rng.random() < 0.5 else None
    crowns = _trees(rng, shape, n_t, r_tree, edge_sites)
    crowns[0][road | (roofs[0] > 0)] = 0
    groves = _groups(crowns[0])

    # --- objects: field pieces (split by roads), pivots, road, groves, farm buildings
    objects = lab.copy()
    off = objects.max() + 1
    objects[groves > 0] = groves[groves > 0].astype(np.int64) + off
    off = objects.max() + 1
    objects[roofs[0] > 0] = roofs[0][roofs[0] > 0] + off
    objects, _ = _clean(objects, max(8.0, 3e-4 * h * w), split=True)

    # --- render
    n_lab = int(lab.max()) + 1
    col = _jitter_colours(rng, _FIELD_COLOURS, n_lab)
    alpha = theta0 + rng.choice([0, np.pi / 2], n_lab) + rng.normal(0, 0.03, n_lab)
    period = rng.uniform(2.5, 8, n_lab) * gsd**0.5
    s_amp = rng.uniform(0, 0.15, n_lab) * (rng.random(n_lab) < 0.7)
    la = np.maximum(lab, 0)
    phase = (xx * np.cos(alpha)[la].astype(_F32) + yy * np.sin(alpha)[la].astype(_F32)) * (
        2 * np.pi / period[la].astype(_F32)
    )
    mod = 1 + s_amp[la].astype(_F32) * np.sin(phase)
    mod *= 1 + rng.uniform(0.03, 0.1) * _noise(rng, shape, rng.uniform(1.5, 3))
    mod *= 1 + rng.uniform(0.02, 0.08) * _noise(rng, shape, short / 6)
    img = col[la] * mod[..., None]
    for pid, pcy, pcx in pivots:  # wheel tracks and a differently cropped sector
        py_, px_ = np.nonzero(lab == pid)
        d = np.hypot(py_ - pcy, px_ - pcx).astype(_F32)
        img[py_, px_] *= (1 + 0.06 * np.sin(d / rng.uniform(2, 5) * 2 * np.pi))[:, None]
        if rng.random() < 0.6:
            t = np.arctan2(py_ - pcy, px_ - pcx)
            t0, t1 = np.sort(rng.uniform(-np.pi, np.pi, 2))
            sec = (t > t0) & (t < t1)
            img[py_[sec], px_[sec]] = _jitter_colours(rng, _FIELD_COLOURS, 1)[0]
    if border.any():
        img[border] = _jitter_colours(rng, _FIELD_COLOURS[[2, 7, 8]], 1)[0] * 0.8
    if road.any():
        rc = _jitter_colours(rng, np.array([(0.42, 0.42, 0.44), (0.62, 0.56, 0.46)], _F32), 1)[0]
        img[road] = rc * (1 + 0.04 * fine)[road][:, None]
    sun_ang = rng.uniform(0, 2 * np.pi)
    sun = (math.sin(sun_ang), math.cos(sun_ang))
    idx_b = np.arange(n_b)
    img = _roofs_render(
        rng,
        img,
        roofs[0],
        roofs[2],
        roofs[3],
        ba[idx_b],
        bb[idx_b],
        bth[idx_b],
        sun,
        rng.uniform(1, 4) * gsd**0.5,
        fine,
    )
    img = _tree_layer(rng, img, crowns, sun, r_tree * rng.uniform(0.5, 1.2), fine)
    return img.astype(_F32), (objects,)


def _aerial_urban(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    h, w = shape
    gsd = _loguniform(rng, 0.5, 1.6)
    theta = rng.uniform(0, np.pi / 2) if rng.random() < 0.7 else rng.normal(0, 0.02)
    pu = rng.uniform(60, 150) * gsd
    pv = rng.uniform(45, 110) * gsd
    sw = rng.uniform(4, 9) * gsd**0.7
    yy = np.arange(h, dtype=_F32)[:, None]
    xx = np.arange(w, dtype=_F32)[None, :]
    ca, sa = math.cos(theta), math.sin(theta)
    u_off, v_off = rng.uniform(0, pu), rng.uniform(0, pv)
    u = xx * _F32(ca) + yy * _F32(sa) + _F32(u_off)
    v = yy * _F32(ca) - xx * _F32(sa) + _F32(v_off)
    iu = np.floor(u / _F32(pu)).astype(np.int32)
    iv = np.floor(v / _F32(pv)).astype(np.int32)
    fu = u - iu * pu
    fv = v - iv * pv
    pres_u = rng.random(iu.max() - iu.min() + 2) < 0.88
    pres_v = rng.random(iv.max() - iv.min() + 2) < 0.88
    street = ((fu < sw) & pres_u[iu - iu.min()]) | ((fv < sw) & pres_v[iv - iv.min()])
    blocks = _groups(~street)
    # --- houses: lots along both long sides of every block cell, boxes in the rotated frame
    lot = rng.uniform(12, 26) * gsd
    u0 = np.floor(u.min() / pu) - 1
    v0 = np.floor(v.min() / pv) - 1
    nu = int(np.ceil(u.max() / pu) - u0) + 1
    nv = int(np.ceil(v.max() / pv) - v0) + 1
    bu, bv = (g.ravel() for g in np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij"))
    ub = (u0 + bu) * pu + sw
    vb = (v0 + bv) * pv + sw
    du, dv = pu - sw, pv - sw
    r = rng.random(len(bu))
    big = (r >= 0.08) & (r < 0.2)  # one big flat building; r < 0.08: park / empty block
    nbig = int(big.sum())
    # Houses on lots along both long sides of every other block.
    n_lots = max(1, int(du // lot))
    lw = du / n_lots
    rows = 2 if dv > 4 * sw + 20 * gsd else 1
    setback = rng.uniform(1.5, 5, len(bu)) * gsd
    bi, li, ri = (
        g.ravel()
        for g in np.meshgrid(
            np.nonzero(r >= 0.2)[0], np.arange(n_lots), np.arange(rows), indexing="ij"
        )
    )
    m = len(bi)
    hw = lw / 2 * rng.uniform(0.55, 0.92, m)
    depth = np.minimum(dv / (2 * rows) - setback[bi], hw * rng.uniform(0.7, 1.6, m))
    cu = ub[bi] + (li + 0.5) * lw + rng.uniform(-1, 1, m) * (lw / 2 - hw)
    cv = np.where(ri == 0, vb[bi] + setback[bi] + depth, vb[bi] + dv - setback[bi] - depth)
    ok = (rng.random(m) >= 0.15) & (depth >= 2)
    hw, depth, cu, cv, ri = hw[ok], depth[ok], cu[ok], cv[ok], ri[ok]
    ext = np.nonzero(rng.random(len(hw)) < 0.25)[0]  # L-shaped extensions towards the back
    e_len = depth[ext] * rng.uniform(0.5, 0.9, len(ext))
    us = np.concatenate(
        [ub[big] + du / 2, cu, cu[ext] + rng.choice([-1, 1], len(ext)) * hw[ext] * 0.5]
    )
    vs = np.concatenate(
        [vb[big] + dv / 2, cv, cv[ext] + (depth[ext] + e_len * 0.8) * np.where(ri[ext] == 0, 1, -1)]
    )
    a_ = np.concatenate([du / 2 * rng.uniform(0.6, 0.9, nbig), hw, hw[ext] * 0.45])
    b_ = np.concatenate([dv / 2 * rng.uniform(0.5, 0.85, nbig), depth, e_len])
    grp = np.concatenate([np.arange(nbig + len(hw)), nbig + ext])
    th_ = np.full(len(us), theta)
    # back to image coordinates (undo the offsets used for u, v)
    uu, vv = us - u_off, vs - v_off
    ox = uu * ca - vv * sa
    oy = uu * sa + vv * ca
    near = (oy > -pu) & (oy < h + pu) & (ox > -pu) & (ox < w + pu)
    ox, oy, a_, b_, th_, grp = ox[near], oy[near], a_[near], b_[near], th_[near], grp[near]
    raw, _, un, vn = _paint(shape, oy, ox, a_, b_, th_, box=True, local=True)
    roof_raw = np.concatenate([[0], grp + 1])[raw]
    roof_raw[street] = 0
    # Roofs avoid streets, and blocks are the street-free components: each roof is in one block.
    roofs, _ = _clean(roof_raw, max(10.0, 4e-4 * h * w))

    # --- render
    fine = _noise(rng, shape, 1.2)
    grass = _jitter_colours(rng, _FIELD_COLOURS[:4], 1)[0]
    img = (1 + 0.08 * fine + 0.06 * _noise(rng, shape, 12))[..., None] * grass
    bcol = _jitter_colours(rng, _FIELD_COLOURS, int(blocks.max()) + 1, 0.05)
    mixed = rng.random(len(bcol)) < 0.3
    bmask = mixed[blocks] & (blocks > 0)
    img[bmask] = img[bmask] * 0.5 + 0.5 * bcol[blocks[bmask]]
    asphalt = _jitter_colours(rng, np.array([(0.40, 0.40, 0.42), (0.30, 0.30, 0.32)], _F32), 1)[0]
    img[street] = asphalt * (1 + 0.05 * fine)[street][:, None]
    walk = (~street) & ndi.binary_dilation(street, iterations=max(1, int(round(1.5 * gsd))))
    img[walk] = np.array([0.62, 0.61, 0.58], _F32)
    sun_ang = rng.uniform(0, 2 * np.pi)
    sun = (math.sin(sun_ang), math.cos(sun_ang))
    # pools / sheds in yards (unlabelled clutter)
    if rng.random() < 0.4:
        n_p = rng.integers(1, 8)
        pl = _paint(
            shape,
            rng.uniform(0, h, n_p),
            rng.uniform(0, w, n_p),
            rng.uniform(2, 5, n_p) * gsd,
            rng.uniform(1.5, 3, n_p) * gsd,
            np.full(n_p, theta),
            box=True,
        )[0]
        pl[(roofs > 0) | street] = 0
        img[pl > 0] = np.array([0.35, 0.65, 0.75], _F32)
    # Facets follow each painted box; colours follow the building (group of boxes).
    roof_boxes = np.where(roofs > 0, raw, 0)
    height = rng.uniform(2, 6) * gsd
    img = _roofs_render(rng, img, roof_boxes, un, vn, a_, b_, th_, sun, height, fine, grp)
    r_tree = rng.uniform(2, 5) * gsd**0.5
    n_t = int(rng.uniform(0, 0.003) * h * w / r_tree)
    crowns = _trees(rng, shape, n_t, r_tree, walk if rng.random() < 0.5 else None)
    crowns[0][(roofs > 0) | street] = 0
    img = _tree_layer(rng, img, crowns, sun, r_tree * rng.uniform(0.5, 1.2), fine)
    return img.astype(_F32), (roofs, blocks)


_GENERATORS = {
    "nuclei": _make_nuclei,
    "cells": _make_cells,
    "ct": _make_ct,
    "aerial": _make_aerial,
}
