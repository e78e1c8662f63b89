"""Pieces of aerial scenes: palettes, field partitions, roofs with shadows, tree crowns."""

from __future__ import annotations

import math

import numpy as np

from tilesam.training.synthetic.fields import _F32, Rng, Shape
from tilesam.training.synthetic.shapes import _harmonics, _paint

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
