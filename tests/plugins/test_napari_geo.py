"""Georasters in napari (issue 26, item 4): the cursor's map coordinates in the status bar,
labels saved as polygons on the map, and a vector file of prompts opened over the image.

The scene is a real GeoTIFF (GDAL through rasterio) in UTM 33N with 0.5 m pixels; the
vector files are real GeoJSON / GeoPackage files read back with pyogrio.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from affine import Affine
from tilesam_napari import _layers, _vectors

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference

TRANSFORM = (0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0)  # a, b, c, d, e, f
GEO = GeoReference("EPSG:32633", TRANSFORM)
SHAPE = (200, 300)


@pytest.fixture
def scene(tmp_path, write_geotiff) -> str:
    data = (np.add.outer(np.arange(SHAPE[0]), 2 * np.arange(SHAPE[1])) % 251).astype(np.uint8)
    return write_geotiff(tmp_path / "scene.tif", data, transform=Affine(*TRANSFORM))


@pytest.fixture
def viewer_with_scene(make_napari_viewer, scene):
    viewer = make_napari_viewer()
    (image,) = viewer.open(scene, plugin="tilesam")
    return viewer, image


def _map_xy(text: str) -> tuple[float, float]:
    found = re.search(r"EPSG:32633 x (-?[\d.]+) y (-?[\d.]+)", text)
    assert found, f"no map coordinates in the status {text!r}"
    return float(found.group(1)), float(found.group(2))


def _status_at(viewer, layer, row: float, col: float) -> str:
    """The status text with the cursor over pixel (row, col) of `layer` selected."""
    viewer.layers.selection.active = layer
    viewer.mouse_over_canvas = True
    viewer.cursor.position = tuple(layer.data_to_world((row, col)))
    viewer.update_status_from_cursor()
    status = viewer.status
    return status["coordinates"] if isinstance(status, dict) else status


def test_status_bar_shows_the_map_coordinates_of_the_cursor(viewer_with_scene):
    viewer, image = viewer_with_scene
    # The centre of pixel (row 20, col 30): 0.5 m pixels from the corner (402000, 5101000).
    x, y = _map_xy(_status_at(viewer, image, 20, 30))
    assert abs(x - 402015.25) < 0.25 and abs(y - 5100989.75) < 0.25
    # What the status bar draws (napari draws its own status first; TileSAM's follows).
    drawn = viewer.window._qt_window.statusBar()._coordinates.text()
    assert _map_xy(drawn) == (x, y)
    x, y = _map_xy(_status_at(viewer, image, 150.3, 10.8))
    assert abs(x - (402000 + 0.5 * 11.3)) < 0.01 and abs(y - (5101000 - 0.5 * 150.8)) < 0.01
    # The labels and prompt layers TileSAM lays over the image show them too.
    labels = _layers.add_labels(viewer, image, _layers.COMMITTED, np.zeros(SHAPE, np.uint32))
    points = _layers.add_points(viewer, image)
    for layer in (labels, points):
        x, y = _map_xy(_status_at(viewer, layer, 199, 299))
        assert abs(x - 402149.75) < 0.25 and abs(y - 5100900.25) < 0.25
    # A layer without a georeference: napari's status alone.
    other = viewer.add_image(np.zeros((10, 10)), name="plain")
    assert "EPSG" not in _status_at(viewer, other, 5, 5)


def _committed(viewer, image):
    labels = np.zeros(SHAPE, np.uint32)
    labels[10:30, 40:70] = 1  # 600 pixels
    labels[100:150, 200:260] = 2
    labels[120:130, 220:230] = 0  # a hole: 3000 - 100 pixels
    return labels, _layers.add_labels(viewer, image, _layers.COMMITTED, labels)


@pytest.mark.parametrize("ending", [".gpkg", ".geojson", ".shp"])
def test_committed_objects_save_as_polygons_on_the_map(viewer_with_scene, tmp_path, ending):
    import pyogrio
    import shapely

    viewer, image = viewer_with_scene
    labels, layer = _committed(viewer, image)
    path = tmp_path / f"objects{ending}"
    viewer.layers.selection = {layer}
    assert viewer.layers.save(str(path), selected=True, plugin="tilesam") == [str(path)]
    meta, _, wkb, fields = pyogrio.raw.read(path)
    assert pyogrio.read_info(path)["crs"] == "EPSG:32633"
    geoms = shapely.from_wkb(wkb)
    ids = fields[meta["fields"].tolist().index("id")].tolist()
    assert ids == [1, 2]
    areas = [0.25 * np.count_nonzero(labels == i) for i in ids]  # pixel count x 0.25 m²
    np.testing.assert_allclose(shapely.area(geoms), areas)
    np.testing.assert_allclose(fields[meta["fields"].tolist().index("area")], areas)
    # Rows 10-29, columns 40-69 on the map; then rows 100-149, columns 200-259.
    np.testing.assert_allclose(geoms[0].bounds, (402020.0, 5100985.0, 402035.0, 5100995.0))
    np.testing.assert_allclose(geoms[1].bounds, (402100.0, 5100925.0, 402130.0, 5100950.0))


def test_large_labels_are_traced_object_by_object_alike():
    """Object by object (a zarr array, read block by block) gives the same polygons as
    tracing the whole array: objects across blocks, one inside another's box."""
    import shapely
    import zarr

    labels = np.zeros(SHAPE, np.uint32)
    labels[5:150, 10:20] = 3  # an L across blocks, around object 8's box
    labels[140:150, 10:200] = 3
    labels[60:100, 60:120] = 8
    labels[60:70, 250:300] = 9
    stored = zarr.create_array(store={}, shape=SHAPE, chunks=(64, 64), dtype="uint32")
    stored[:] = labels
    assert _vectors.object_boxes(stored, 64) == {
        3: (5, 10, 150, 200), 8: (60, 60, 100, 120), 9: (60, 250, 70, 300)
    }  # fmt: skip
    whole = _vectors.label_features(labels, GEO)
    blocks = _vectors.label_features(stored, GEO, block=64)
    assert [f.id for f in blocks] == [f.id for f in whole] == [3, 8, 9]
    for a, b in zip(whole, blocks):
        assert shapely.equals(a.geometry, b.geometry) and a.area == b.area


def test_labels_without_georeference_are_pixel_polygons_or_refused(tmp_path):
    import pyogrio

    labels = np.zeros((20, 30), np.uint8)
    labels[2:5, 3:9] = 4
    path = tmp_path / "pixels.gpkg"
    assert _vectors.write_polygons_file(str(path), labels, {}) == [str(path)]
    meta, _, wkb, _ = pyogrio.raw.read(path)
    assert meta["crs"] is None
    import shapely

    assert shapely.from_wkb(wkb)[0].bounds == (3.0, 2.0, 9.0, 5.0)  # x = column, y = row
    with pytest.raises(TileSAMError, match="GeoJSON is always longitude / latitude"):
        _vectors.write_polygons_file(str(tmp_path / "pixels.geojson"), labels, {})
    with pytest.raises(TileSAMError, match="2D labels"):
        _vectors.write_polygons_file(str(path), np.zeros((2, 4, 4), np.uint8), {})


def _prompt_file(tmp_path) -> str:
    """Two points (one negative) and a polygon, in longitude / latitude (GeoJSON's CRS)."""
    from rasterio.warp import transform

    # Pixel centres (20, 30) and (120, 250); a rectangle over rows 50-79, columns 100-159.
    xs = [402015.25, 402125.25, 402050.0, 402080.0, 402080.0, 402050.0]
    ys = [5100989.75, 5100939.75, 5100975.0, 5100975.0, 5100960.0, 5100960.0]
    lon, lat = transform("EPSG:32633", "EPSG:4326", xs, ys)
    ring = [[lon[i], lat[i]] for i in (2, 3, 4, 5, 2)]
    features = [
        {"type": "Feature", "properties": {"label": 1},
         "geometry": {"type": "Point", "coordinates": [lon[0], lat[0]]}},
        {"type": "Feature", "properties": {"label": 0},
         "geometry": {"type": "Point", "coordinates": [lon[1], lat[1]]}},
        {"type": "Feature", "properties": {"label": None},
         "geometry": {"type": "Polygon", "coordinates": [ring]}},
    ]  # fmt: skip
    path = tmp_path / "prompts.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def test_vector_file_opens_as_prompt_layers_over_the_image(viewer_with_scene, tmp_path):
    viewer, image = viewer_with_scene
    points, boxes = viewer.open(_prompt_file(tmp_path), plugin="tilesam")
    assert (points.name, boxes.name) == (_layers.POINTS, _layers.BOXES)
    world = np.array([points.data_to_world(p) for p in points.data])
    expected = np.array([image.data_to_world(p) for p in [(20, 30), (120, 250)]])
    np.testing.assert_allclose(world, expected, atol=0.25)  # half a 0.5 m pixel
    assert points.features["label"].tolist() == [True, False]
    np.testing.assert_allclose(points.face_color[1], [1, 0, 0, 1])  # negative: red
    # The rectangle lies on the polygon's bounds: world y = -northing, x = easting.
    corners = np.array([boxes.data_to_world(v) for v in boxes.data[0]])
    np.testing.assert_allclose(corners.min(0), (-5100975.0, 402050.0), atol=0.01)
    np.testing.assert_allclose(corners.max(0), (-5100960.0, 402080.0), atol=0.01)
    # TileSAM reads them as its prompts, in the image's pixels.
    prompt = _layers.read_prompt(points, boxes, image, None)
    np.testing.assert_allclose(prompt.points, [(20, 30), (120, 250)], atol=0.5)
    assert list(prompt.labels) == [1, 0]
    np.testing.assert_allclose(prompt.box, (49.5, 99.5, 79.5, 159.5), atol=0.05)
    # A second file, with the prompt layers taken: layers named after it.
    more = viewer.open(_prompt_file(tmp_path), plugin="tilesam")
    assert [lyr.name for lyr in more] == ["prompts points", "prompts boxes"]
    assert _map_xy(_status_at(viewer, more[0], 20, 30))  # they carry the georeference


def test_vector_file_without_a_georeferenced_image_is_refused(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((10, 10)), name="plain")
    with pytest.raises(TileSAMError, match="open the GeoTIFF"):
        _vectors.read_vectors(_prompt_file(tmp_path))
