"""Aerial RGB scenes: rural (levels ``(objects,)``) or urban (``(roofs, building blocks)``)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from tilesam.training.synthetic.aerial_parts import (
    _FIELD_COLOURS,
    _bsp_fields,
    _jitter_colours,
    _roofs_render,
    _tree_layer,
    _trees,
)
from tilesam.training.synthetic.fields import _F32, Levels, Rng, Shape, _loguniform, _noise
from tilesam.training.synthetic.labels import _boundaries, _clean, _groups
from tilesam.training.synthetic.shapes import _paint


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
    # One long recipe on purpose: its steps share the scene parameters drawn as it goes, and
    # the order of its draws from `rng` fixes the image a seed gives (the data the bundled
    # `tiny` was trained on), so it reads top to bottom as the scene is built.
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
    # One long recipe on purpose: its steps share the scene parameters drawn as it goes, and
    # the order of its draws from `rng` fixes the image a seed gives (the data the bundled
    # `tiny` was trained on), so it reads top to bottom as the scene is built.
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
