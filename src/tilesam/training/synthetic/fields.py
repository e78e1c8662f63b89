"""Random fields and filters shared by every generator, and the types they pass around."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

Shape = tuple[int, int]
Levels = tuple[np.ndarray, ...]
Rng = np.random.Generator

_F32 = np.float32


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


def _resample(
    grid: np.ndarray,
    taps_y: tuple[np.ndarray, np.ndarray],
    taps_x: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
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
