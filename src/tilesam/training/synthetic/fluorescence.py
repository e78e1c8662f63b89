"""What nuclei and cells share: nucleus shapes and texture, debris, the microscope and camera."""

from __future__ import annotations

import numpy as np

from tilesam.training.synthetic.fields import _F32, Rng, Shape, _blur, _loguniform, _noise
from tilesam.training.synthetic.shapes import _harmonics


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
