"""Bad input to the TileSAM algorithms: a clear `QgsProcessingException`, and no output
file left behind."""

from __future__ import annotations

import numpy as np
import pytest


def _refused(params: dict, match: str, *outputs) -> None:
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=match):
        processing.run("tilesam:segmentpoints", params)
    assert not any(path.exists() for path in outputs)


def test_a_point_layer_without_crs(qgis_app, utm_scene, point_layer, tmp_path):
    layer = point_layer([(402060.0, 5100950.0)], crs=None)
    out = tmp_path / "l.tif"
    _refused({"INPUT": str(utm_scene), "POINTS": layer, "OUTPUT": str(out)}, "has no CRS", out)


def test_a_raster_without_crs(qgis_app, point_layer, tmp_path):
    import rasterio

    path = tmp_path / "plain.tif"
    profile = {"driver": "GTiff", "height": 64, "width": 64, "count": 1, "dtype": "uint8"}
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.zeros((1, 64, 64), np.uint8))
    out = tmp_path / "l.tif"
    params = {"INPUT": str(path), "POINTS": point_layer([(14.3, 46.0)]), "OUTPUT": str(out)}
    _refused(params, "raster 'plain' has no CRS", out)


def test_an_empty_point_layer(qgis_app, utm_scene, point_layer, tmp_path):
    out, vector = tmp_path / "l.tif", tmp_path / "v.gpkg"
    params = {"INPUT": str(utm_scene), "POINTS": point_layer([]), "OUTPUT": str(out)}
    _refused(params | {"OUTPUT_VECTOR": str(vector)}, "has no features", out, vector)


def test_points_outside_the_raster(qgis_app, utm_scene, scene_geometry, point_layer, tmp_path):
    outside = [scene_geometry.map_point(100, 100), scene_geometry.map_point(-400, 100)]
    out, vector = tmp_path / "l.tif", tmp_path / "v.gpkg"
    params = {"INPUT": str(utm_scene), "POINTS": point_layer(outside), "OUTPUT": str(out)}
    _refused(params | {"OUTPUT_VECTOR": str(vector)}, "Outside the scene: features? 2", out, vector)


def test_no_prompt_layer(qgis_app, utm_scene, tmp_path):
    out = tmp_path / "l.tif"
    _refused({"INPUT": str(utm_scene), "OUTPUT": str(out)}, "Give a POINTS layer or a BOXES", out)
