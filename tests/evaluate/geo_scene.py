"""A real multi-band GeoTIFF whose bands have very different ranges, with its instance
labels: a scene a :class:`tilesam.Session` scales band by band over the scene, where one
pooled range would feed the encoder other pixels. Shared by the evaluation and training
tests (their conftests put this folder on the path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import tifffile
from affine import Affine

SHAPE = (96, 128)
# Three int16 bands of very different ranges: one range for all would leave the first
# nearly black and the last nearly flat.
BANDS = ((0, 120), (1000, 9000), (-400, 600))


def scene_labels() -> np.ndarray:
    """Two discs, ids 1 and 2, on a background of 0."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    labels = np.zeros(SHAPE, np.uint16)
    labels[(yy - 30) ** 2 + (xx - 40) ** 2 <= 12**2] = 1
    labels[(yy - 62) ** 2 + (xx - 95) ** 2 <= 10**2] = 2
    return labels


def scene_bands(labels: np.ndarray, n_bands: int) -> np.ndarray:
    """``(n_bands, H, W)`` int16: each band's objects bright on a noisy ground."""
    rng = np.random.default_rng(7)
    bands = []
    for b in range(n_bands):
        low, high = BANDS[b % len(BANDS)]
        ground = rng.uniform(low, low + 0.3 * (high - low), SHAPE)
        bands.append(np.where(labels > 0, high - 0.1 * (high - low), ground))
    return np.stack(bands).astype(np.int16)


def write_geotiff(path: Path, bands: np.ndarray) -> Path:
    """`bands` ``(n, H, W)`` int16 as a GeoTIFF in UTM (30 m pixels), written by GDAL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "width": SHAPE[1], "height": SHAPE[0], "count": len(bands),
        "dtype": "int16", "crs": "EPSG:32633", "interleave": "pixel",
        "transform": Affine(30.0, 0.0, 500_000.0, 0.0, -30.0, 5_000_000.0),
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(bands)
    return path


def write_scene_folder(folder: Path, n_bands: int = 3) -> Path:
    """``folder/scene.tif`` (the GeoTIFF) and ``folder/scene_labels.tif``: a
    :class:`~tilesam.evaluate.datasets.LabelledImageFolder` of one pair."""
    labels = scene_labels()
    write_geotiff(folder / "scene.tif", scene_bands(labels, n_bands))
    tifffile.imwrite(folder / "scene_labels.tif", labels)
    return folder
