"""One intensity range per image: how a session maps pixels to the encoder's 0..255.

A pixel must have the same value in every tile and slice, so the range is chosen once for
the whole image (never per tile, as some tools do): uint8 images as they are, a user's
``(low, high)`` or a CT window if given, else robust percentiles of a strided sample of
the whole image (of its non-zero voxels for a volume: MR and microscopy stacks are
zero-padded). The chosen entry is part of the cache signature, so a cache reopened
without options keeps its own range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io import ImageSource
from tilesam.models.preprocess import DEFAULT_PERCENTILES, intensity_range, window_range

SAMPLE_BUDGET = 4_000_000  # pixels sampled for the intensity range
_BAND_PIXELS = 4_000_000  # pixels per band read while sampling (~8 MB of uint16)
_SAMPLE_SLICES = 16  # slices of a volume sampled for the intensity range


def fixed_normalisation(intensity: Any, window: Any) -> dict[str, Any] | None:
    """The signature's normalisation entry for a user range or a CT window; None for neither.

    >>> fixed_normalisation(None, "lung")
    {'method': 'window', 'window': 'lung', 'range': [-1350.0, 150.0]}
    >>> fixed_normalisation((0, 4095), None)
    {'method': 'user', 'range': [0.0, 4095.0]}
    """
    if intensity is not None and window is not None:
        raise TileSAMError(
            "Give either intensity=(low, high) or a CT window=, not both: both set the "
            "intensity range sent to the encoder."
        )
    if intensity is not None:
        return {"method": "user", "range": list(check_range(intensity))}
    if window is None:
        return None
    low, high = window_range(window)
    name = window if isinstance(window, str) else [float(v) for v in window]
    return {"method": "window", "window": name, "range": [low, high]}


def image_normalisation(
    source: ImageSource, known: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The normalisation a session chooses when none is given: an existing cache's own
    (`known`, any method: a CT window or a user's range stays), else the image's.

    >>> from tilesam.io import open_image
    >>> image_normalisation(open_image(np.zeros((8, 8), np.uint8)))
    {'method': 'uint8', 'range': [0.0, 255.0]}
    >>> image_normalisation(open_image(np.zeros((8, 8), np.uint16)), {"method": "user",
    ...                     "range": [0.0, 4095.0]})
    {'method': 'user', 'range': [0.0, 4095.0]}
    """
    if known and "range" in known and known.get("method") in ("user", "window"):
        return dict(known)
    if source.dtype == np.uint8:  # SAM's own input scale: used as is
        return {"method": "uint8", "range": [0.0, 255.0]}
    if source.dtype == bool:
        return {"method": "bool", "range": [0.0, 1.0]}
    # Volumes (MR, microscopy stacks) are often zero-padded: zeros would drag the range.
    nonzero = source.n_slices > 1
    # The bands of a multispectral scene have ranges of their own (GIS convention).
    per_band = source.georeference is not None and source.n_channels > 1
    name = "percentiles-nonzero" if nonzero else "percentiles"
    name = "percentiles-per-band" if per_band else name
    method = {"method": name, "percentiles": list(DEFAULT_PERCENTILES)}
    # The same image (the content signature says so) needs no second sampling.
    if known and "range" in known and all(known.get(k) == v for k, v in method.items()):
        return {**method, "range": list(known["range"])}
    low, high = sample_intensity_range(
        source, DEFAULT_PERCENTILES, nonzero=nonzero, per_band=per_band
    )
    return {**method, "range": [low, high]}


def intensity_of(normalisation: Mapping[str, Any]) -> tuple[Any, Any]:
    """The ``(low, high)`` a normalisation entry sends to the encoder: floats, or one tuple
    per channel for ``"percentiles-per-band"``.

    >>> intensity_of({"method": "percentiles-per-band", "range": [[1, 2, 3], [9, 8, 7]]})
    ((1.0, 2.0, 3.0), (9.0, 8.0, 7.0))
    """
    low, high = normalisation["range"]
    if np.ndim(low):
        return tuple(float(v) for v in low), tuple(float(v) for v in high)
    return float(low), float(high)


def check_range(intensity: Any) -> tuple[float, float]:
    """`intensity` as ``(low, high)`` floats with finite ``low < high``."""
    try:
        low, high = (float(v) for v in intensity)
    except (TypeError, ValueError):
        raise TileSAMError(f"intensity must be (low, high), got {intensity!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise TileSAMError(f"intensity (low, high) needs finite low < high, got {intensity!r}.")
    return low, high


def sample_intensity_range(
    source: ImageSource,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    budget: int = SAMPLE_BUDGET,
    *,
    nonzero: bool = False,
    per_band: bool = False,
) -> tuple[Any, Any]:
    """Robust ``(low, high)`` of a whole image from about `budget` evenly strided pixels.

    Reads up to 16 evenly spaced slices in bands of whole rows (a few MB each), keeping
    every ``step``-th row and column, so memory stays small for any image size; the
    percentiles (of the non-zero pixels only, with `nonzero`) are then
    :func:`tilesam.models.preprocess.intensity_range`'s. Pixels without data (a raster's
    nodata, :meth:`tilesam.io.ImageSource.valid`) are left out; `per_band` gives one range
    per channel, as lists ``([low, ...], [high, ...])``.

    Examples
    --------
    >>> from tilesam.io import ArraySource
    >>> sample_intensity_range(ArraySource(np.arange(1000, dtype=np.uint16).reshape(10, 100)))
    (4.995, 994.005)
    """
    pixels = _sample_pixels(source, budget)
    if pixels.shape[0] == 0:
        raise TileSAMError(
            f"Every pixel of {source.describe()} is nodata: there is nothing to segment. "
            "Check the file's nodata value (gdalinfo), or give the right one (--nodata)."
        )
    if not per_band or pixels.shape[1] == 1:
        return intensity_range(pixels.reshape(-1), percentiles, nonzero=nonzero)
    ranges = [intensity_range(pixels[:, c], percentiles, nonzero=nonzero)
              for c in range(pixels.shape[1])]  # fmt: skip
    return [r[0] for r in ranges], [r[1] for r in ranges]


def _sample_pixels(source: ImageSource, budget: int) -> np.ndarray:
    """About `budget` pixels on a regular lattice over the image, ``(n, channels)``,
    those without data left out."""
    nz = source.n_slices
    zs = sorted({round(i * (nz - 1) / max(_SAMPLE_SLICES - 1, 1)) for i in range(_SAMPLE_SLICES)})
    height, width = source.slice_shape
    step = max(1, math.floor(math.sqrt(len(zs) * height * width / budget)))
    # Bands start at multiples of `step`, so the sample is one regular lattice.
    band = max(step, (_BAND_PIXELS // max(width, 1)) // step * step)
    parts = []
    for z in zs:
        for y in range(0, height, band):
            rows = (slice(y, min(y + band, height)), slice(None))
            block = np.ascontiguousarray(source.read_slice(z, rows)[::step, ::step])
            block = block.reshape(-1, source.n_channels)
            valid = source.valid(z, rows)
            parts.append(block if valid is None else block[valid[::step, ::step].reshape(-1)])
    return np.concatenate(parts)
