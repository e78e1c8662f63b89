"""Fixtures shared across the test suite."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

import tilesam
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.models.sam_model import SamModel

SAMPLES = Path(__file__).parents[1] / "sample_data"
#: The QGIS plugin's tests: their own process and venv (`bash scripts/test_qgis.sh`), as
#: QGIS's PyQt5 and napari's PyQt6 cannot share one; collected only when named.
QGIS_TESTS = Path(__file__).parent / "qgis"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave ``tests/qgis`` out unless the run names it (``pytest tests/qgis``)."""
    if collection_path != QGIS_TESTS:
        return None
    for arg in config.args:
        named = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if named == QGIS_TESTS or QGIS_TESTS in named.parents:
            return None
    return True


def _random_tiny(seed: int = 0, **options: Any) -> SamModel:
    arch = dataclasses.replace(ARCHITECTURES["tiny"], image_size=256, embedding_size=16)
    torch.manual_seed(seed)
    return SamModel(
        build_sam(arch),
        name="tiny-random",
        architecture=arch,
        weights_hash=f"random-seed{seed}",
        **options,
    )


@pytest.fixture(scope="session")
def random_tiny() -> Callable[[int], SamModel]:
    """Build TileSAM's `tiny` architecture at a 256-pixel input with random weights.

    A tile costs milliseconds, so tests of mechanics (geometry, caching, stitching,
    propagation) run fast; such a model's masks mean nothing, so they never test quality.
    """
    return _random_tiny


@pytest.fixture(scope="module")
def model(random_tiny) -> SamModel:
    """A random `tiny` (seed 0): see :func:`random_tiny`."""
    return random_tiny(0)


@pytest.fixture(scope="session")
def write_geotiff() -> Callable[..., str]:
    """Write a real GeoTIFF with GDAL (rasterio): ``write(path, data, transform=None,
    crs="EPSG:32633", **profile)`` with `data` ``(H, W)`` or ``(bands, H, W)``, tiled in
    128-pixel blocks and deflate-compressed; without `transform` the file has none."""

    def write(path, data: np.ndarray, transform=None, crs="EPSG:32633", **profile) -> str:
        import rasterio

        bands = data if data.ndim == 3 else data[None]
        settings = {
            "driver": "GTiff", "count": bands.shape[0], "height": bands.shape[1],
            "width": bands.shape[2], "dtype": bands.dtype.name, "crs": crs, "tiled": True,
            "blockxsize": 128, "blockysize": 128, "compress": "deflate",
        }  # fmt: skip
        if transform is not None:
            settings["transform"] = transform
        with rasterio.open(path, "w", **{**settings, **profile}) as dataset:
            dataset.write(bands)
        return str(path)

    return write


@pytest.fixture(scope="session")
def tiny() -> SamModel:
    """The bundled `tiny`, loaded once (tests that change it restore it)."""
    return tilesam.load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def nuclei_field(tiny) -> tuple:
    """Real nuclei tiled 3 x 3 (768 pixels), embedded by `tiny`, and their objects: a grid
    twice as wide as the window `tiny` decodes on."""
    labels = np.tile(tifffile.imread(SAMPLES / "nuclei_labels.tif"), (3, 3))
    image = np.tile(tifffile.imread(SAMPLES / "nuclei.tif"), (3, 3))
    return tiny.embed(image), ndimage.label(labels > 0)[0]


@pytest.fixture
def small_disk(tmp_path):
    """A real, nearly full file system: ``small_disk(kib)`` mounts a tmpfs of that size (root
    only) and returns its folder; unmounted after the test. Skipped where mounting is not
    allowed, so that a full disk is never simulated by a mock."""
    import subprocess

    mounted: list[Path] = []

    def make(kib: int = 256) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={int(kib)}k", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): needs root")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def read_only_folder(tmp_path):
    """A real read-only file system (a tmpfs mounted ``ro``; root ignores file modes, so a
    ``chmod`` would not do). Skipped where mounting is not allowed."""
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here ({done.stderr.strip()}): needs root")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)
