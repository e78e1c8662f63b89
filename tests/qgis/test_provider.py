"""The TileSAM Processing provider in a real QGIS: its algorithms, segmenting from points
in another CRS onto the source grid, cancel and resume, and bad input."""

from __future__ import annotations

import numpy as np
import pytest


def _run(name: str, params: dict, feedback=None) -> dict:
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    context = QgsProcessingContext()
    return processing.run(
        name, params, context=context, feedback=feedback or QgsProcessingFeedback()
    )


def test_the_provider_lists_its_three_algorithms(qgis_app):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("tilesam")
    assert provider is not None and provider.name() == "TileSAM"
    names = sorted(a.id() for a in provider.algorithms())
    assert names == ["tilesam:embed", "tilesam:segmenteverything", "tilesam:segmentpoints"]
    params = {p.name() for p in provider.algorithm("segmentpoints").parameterDefinitions()}
    assert {"INPUT", "POINTS", "BOXES", "MODEL", "CACHE", "OUTPUT", "OUTPUT_VECTOR"} <= params


def test_points_in_lonlat_give_labels_and_polygons_on_the_source_grid(
    qgis_app, utm_scene, scene_geometry, point_layer, tmp_path
):
    import pyogrio
    import rasterio

    objects, map_point = scene_geometry.objects, scene_geometry.map_point
    layer = point_layer([map_point(r, c) for r, c, _ in objects], labels=[1, 1, 1])
    out, vector = tmp_path / "labels.tif", tmp_path / "objects.gpkg"
    result = _run(
        "tilesam:segmentpoints",
        {"INPUT": str(utm_scene), "POINTS": layer, "CACHE": str(tmp_path / "c.zarr"),
         "OUTPUT": str(out), "OUTPUT_VECTOR": str(vector)},
    )  # fmt: skip
    assert result["OBJECTS"] == 3 and result["OUTPUT"] == str(out)
    with rasterio.open(utm_scene) as src, rasterio.open(out) as got:
        assert got.crs == src.crs and got.transform == src.transform
        assert got.shape == src.shape
        labels = got.read(1)
    meta, fids, wkb, fields = pyogrio.raw.read(vector, return_fids=True)
    assert rasterio.crs.CRS.from_user_input(meta["crs"]) == rasterio.crs.CRS.from_epsg(32633)
    names = list(meta["fields"])
    assert {"id", "area", "score", "prompt_id"} <= set(names)
    ids = fields[names.index("id")]
    prompt_ids = [int(p) for p in fields[names.index("prompt_id")]]
    assert prompt_ids == [f.id() for f in layer.getFeatures()]
    import shapely

    x0, size, y0 = scene_geometry.transform
    for object_id, geometry in zip(ids, shapely.from_wkb(wkb)):
        rows, cols = np.nonzero(labels == object_id)
        expected = (x0 + cols.min() * size, y0 - (rows.max() + 1) * size,
                    x0 + (cols.max() + 1) * size, y0 - rows.min() * size)  # fmt: skip
        assert np.allclose(geometry.bounds, expected, atol=size)
    for (r, c, _), object_id in zip(objects, ids):
        assert labels[r, c] == object_id  # each object is where its point is


class CancelAfterFirstBatch:
    """Processing feedback that cancels at the first progress report."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Feedback(QgsProcessingFeedback):
            def setProgress(self, value):  # noqa: N802
                super().setProgress(value)
                if value > 0:
                    self.cancel()

        return Feedback()


def test_cancel_during_embed_leaves_a_resumable_cache(qgis_app, utm_scene, tmp_path):
    from qgis.core import QgsProcessingException

    from tilesam import Session

    cache = tmp_path / "scene.zarr"
    params = {"INPUT": str(utm_scene), "CACHE": str(cache), "TILE": 256, "BATCH": 1}
    with pytest.raises(QgsProcessingException, match="run again to resume"):
        _run("tilesam:embed", params, CancelAfterFirstBatch())
    partial = Session(str(utm_scene), cache=cache)
    done, total = partial.n_done, partial.n_tiles
    assert 0 < done < total
    result = _run("tilesam:embed", params)
    assert result["TILES"] == total and result["COMPUTED"] == total - done
    assert Session(str(utm_scene), cache=cache).missing_tiles() == []


def test_segment_everything_writes_labels_and_polygons(qgis_app, utm_scene, tmp_path):
    import rasterio

    out, vector = tmp_path / "all.tif", tmp_path / "all.geojson"
    params = {"INPUT": str(utm_scene), "MIN_SIZE": 200, "OUTPUT": str(out)}
    result = _run("tilesam:segmenteverything", params | {"OUTPUT_VECTOR": str(vector)})
    assert result["OBJECTS"] >= 1 and vector.is_file()
    with rasterio.open(out) as got, rasterio.open(utm_scene) as src:
        assert got.transform == src.transform and int(got.read(1).max()) == result["OBJECTS"]
