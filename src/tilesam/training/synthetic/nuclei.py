"""Fluorescence nuclei: levels ``(nuclei,)`` or ``(nuclei, clusters)``."""

from __future__ import annotations

import numpy as np

from tilesam.training.synthetic.fields import (
    _F32,
    Levels,
    Rng,
    Shape,
    _blur,
    _loguniform,
    _noise,
    _smoothstep,
)
from tilesam.training.synthetic.fluorescence import (
    _debris,
    _finish_fluorescence,
    _nuclear_texture,
    _nucleus_shapes,
)
from tilesam.training.synthetic.labels import _boundaries, _clean, _groups
from tilesam.training.synthetic.shapes import _harmonics, _paint, _place


def _make_nuclei(rng: Rng, shape: Shape) -> tuple[np.ndarray, Levels]:
    # One long recipe on purpose: its steps share the scene parameters drawn as it goes, and
    # the order of its draws from `rng` fixes the image a seed gives (the data the bundled
    # `tiny` was trained on), so it reads top to bottom as the scene is built.
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
