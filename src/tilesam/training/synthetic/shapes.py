"""Placing many objects and rasterising their deformed outlines into a partition at once."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from tilesam.training.synthetic.fields import _F32, Rng

_ANGLE_BINS = 128


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
) -> tuple[np.ndarray, ...]:
    """Rasterise many deformed ellipses (or rotated boxes) at once into a partition.

    Object ``i`` has centre ``(cy, cx)``, semi-axes ``a`` (along angle ``theta``) and ``b``, an
    optional banana bend and a radius modulated by harmonics ``2..K+1`` (``amp``, ``phase`` of shape
    ``(N, K)``). Its normalised depth is ``s = 1 - rho / R(angle)`` (1 at the centre, 0 on the
    outline). Where objects overlap, the one with the larger ``s + priority`` wins, so overlapping
    neighbours end up touching along a natural seam and labels never overlap.

    Returns ``(lab, depth)`` with ``lab`` = object index + 1 (``0`` = none) and ``depth`` = ``s`` of
    the winner; with ``local`` also the winner's normalised local coordinates ``(un, vn)``.
    """
    # Long on purpose: one vectorised rasteriser, the hot path of every generator. Its batching
    # loop shares a dozen per-object arrays with the set-up above and the resolution of
    # overlaps below; split up, each part would take them all as arguments.
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
