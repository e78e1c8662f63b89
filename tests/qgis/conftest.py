"""A real, headless QGIS for the plugin's tests (their own process and venv:
``bash scripts/test_qgis.sh``; the main suite never collects this folder, see
``tests/conftest.py``).

One `QgsApplication` per session with Processing initialised and the TileSAM provider
registered through the plugin, as QGIS itself does; a UTM GeoTIFF with bright round
objects and helpers to make point layers in any CRS.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, "/usr/share/qgis/python/plugins")  # Processing itself
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "qgis"))
# `_mapcanvas`, the map tool's test bench (pytest's importlib mode adds no test folder).
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Centres (row, col) and radii of the scene's objects: two cross the tile border (256).
OBJECTS = ((100, 120, 40), (250, 380, 45), (400, 150, 50))
TRANSFORM = (402000.0, 0.5, 5101000.0)  # x0, pixel size, y0 (north up), UTM zone 33N


@pytest.fixture(scope="session")
def qgis_app() -> Iterator[Any]:
    """QGIS started headless, with Processing and the TileSAM provider (registered by
    the plugin, with no `iface` as in ``qgis_process``)."""
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    import tilesam_qgis

    plugin = tilesam_qgis.classFactory(None)
    plugin.initProcessing()
    app.tilesam_plugin = plugin  # it holds the provider's Python object
    yield app
    plugin.unload()
    gc.collect()  # layers still referenced make exitQgis crash
    app.exitQgis()


@pytest.fixture(scope="session")
def utm_scene(tmp_path_factory) -> Path:
    """A 512 x 512 uint8 GeoTIFF in EPSG:32633 (0.5 m pixels): bright disks (`OBJECTS`)
    on a textured dark ground."""
    import rasterio
    from rasterio.transform import from_origin

    rows, cols = np.mgrid[:512, :512]
    rng = np.random.default_rng(0)
    image = rng.normal(40, 8, (512, 512))
    for r, c, radius in OBJECTS:
        image[(rows - r) ** 2 + (cols - c) ** 2 < radius**2] = 210
    data = np.clip(image, 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("scene") / "scene_utm.tif"
    x0, size, y0 = TRANSFORM
    profile = {"driver": "GTiff", "height": 512, "width": 512, "count": 1, "dtype": "uint8"}
    profile |= {"crs": "EPSG:32633", "transform": from_origin(x0, y0, size, size)}
    with rasterio.open(path, "w", **profile) as out:
        out.write(data[None])
    return path


@pytest.fixture(scope="session")
def scene(qgis_app, tmp_path_factory) -> Path:
    """The map tool's scene (`_mapcanvas`): a UTM GeoTIFF with a bright square."""
    from _mapcanvas import write_scene

    return write_scene(tmp_path_factory.mktemp("maptool") / "scene.tif")


@pytest.fixture(scope="session")
def scene_geometry() -> SimpleNamespace:
    """The scene's `objects` (row, col, radius), `transform` (x0, pixel size, y0) and
    ``map_point(row, col, crs="EPSG:4326")``: a pixel's centre in `crs`."""
    return SimpleNamespace(objects=OBJECTS, transform=TRANSFORM, map_point=_map_point)


def _map_point(row: float, col: float, crs: str = "EPSG:4326") -> tuple[float, float]:
    from rasterio.warp import transform

    x0, size, y0 = TRANSFORM
    xs, ys = transform("EPSG:32633", crs, [x0 + (col + 0.5) * size], [y0 - (row + 0.5) * size])
    return xs[0], ys[0]


@pytest.fixture
def point_layer(qgis_app) -> Callable[..., Any]:
    """``point_layer(points, crs="EPSG:4326", labels=None)``: a memory point layer of map
    points (a ``label`` field when `labels` are given; no CRS when `crs` is None)."""
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    def make(points, crs: str | None = "EPSG:4326", labels=None) -> QgsVectorLayer:
        uri = f"Point?crs={crs or ''}"  # an empty crs= is none (else QGIS takes WGS 84)
        uri += "&field=label:integer" if labels is not None else ""
        layer = QgsVectorLayer(uri, "prompts", "memory")
        features = []
        for i, (x, y) in enumerate(points):
            feature = QgsFeature(layer.fields())
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
            if labels is not None:
                feature.setAttributes([labels[i]])
            features.append(feature)
        layer.dataProvider().addFeatures(features)
        return layer

    return make
