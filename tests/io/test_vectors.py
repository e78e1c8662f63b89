"""Prompts in map coordinates: vector files (GeoJSON, GeoPackage, Shapefile) written by GDAL
in one CRS, read as pixel prompts on a raster in another; every bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.warp import transform, transform_bounds

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference, read_crs
from tilesam.io.map_prompts import prompt_box_from_map, prompt_points_from_map
from tilesam.io.vectors import PromptFeature, merge_features, read_prompt_features

UTM = "EPSG:32633"
GRID = Affine(0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0)  # 0.5 m pixels, UTM 33N
SHAPE = (300, 400)
AERIAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "aerial"
SCENE = AERIAL / "solaris_sample_geotiff_custom_proj.tif"
FIELDS = AERIAL / "solaris_geotiff_custom_proj_labels.geojson"
needs_aerial = pytest.mark.skipif(not FIELDS.is_file(), reason=f"needs {AERIAL} (shared data)")


@pytest.fixture
def geo(tmp_path, write_geotiff) -> GeoReference:
    """The georeference of a real UTM GeoTIFF, as GDAL reads it back."""
    path = write_geotiff(tmp_path / "scene.tif", np.zeros(SHAPE, np.uint8), GRID, crs=UTM)
    return _georeference(path)


def corner_xy(col: float, row: float) -> tuple[float, float]:
    """Map (x, y) of the pixel-corner position (col, row), from the affine alone."""
    return (GRID.c + GRID.a * col, GRID.f + GRID.e * row)


def centre_xy(row: float, col: float) -> tuple[float, float]:
    """Map (x, y) of the centre of pixel (row, col)."""
    return corner_xy(col + 0.5, row + 0.5)


def to_crs(crs: str, xs, ys) -> tuple[np.ndarray, np.ndarray]:
    x, y = transform(UTM, crs, list(xs), list(ys))
    return np.asarray(x), np.asarray(y)


def write_vector(path: Path, geoms, crs, **fields) -> Path:
    geoms = np.array(geoms, dtype=object)
    kinds = {g.geom_type for g in geoms} or {"Point"}
    kind = kinds.pop() if len(kinds) == 1 else "Unknown"
    names = list(fields)
    data = [np.asarray(fields[n]) for n in names]
    pyogrio.raw.write(path, shapely.to_wkb(geoms), data, names, crs=crs, geometry_type=kind)
    return path


def test_points_in_wgs84_land_on_their_pixel_centres_in_utm(tmp_path, geo) -> None:
    pixels = np.array([(10, 20), (150.0, 399), (299, 0), (123, 234)])
    x, y = to_crs("EPSG:4326", *zip(*[centre_xy(r, c) for r, c in pixels]))
    labels = np.array([1.0, 0.0, np.nan, 1.0])  # NaN: written as null, read as positive
    path = write_vector(
        tmp_path / "clicks.geojson", shapely.points(x, y), "EPSG:4326", label=labels
    )
    found = read_prompt_features(path, geo, SHAPE)
    assert [f.fids for f in found] == [(0,), (1,), (2,), (3,)]
    assert [f.labels for f in found] == [(1,), (0,), (1,), (1,)]
    assert all(f.box is None for f in found)
    got = np.array([f.points[0] for f in found])
    np.testing.assert_allclose(got, pixels, atol=1e-3)  # well within half a pixel


def test_map_points_and_boxes_given_directly(geo) -> None:
    xs, ys = zip(centre_xy(5, 7), centre_xy(200, 300))
    lon, lat = to_crs("EPSG:4326", xs, ys)
    points, labels = prompt_points_from_map(
        np.column_stack([lon, lat, [1, 0]]), geo, crs="EPSG:4326", shape=SHAPE
    )
    np.testing.assert_allclose(points, [(5, 7), (200, 300)], atol=1e-3)
    assert labels.tolist() == [1, 0]
    same, default = prompt_points_from_map([xs[0], ys[0]], geo)  # the raster's CRS
    np.testing.assert_allclose(same, [(5, 7)], atol=1e-9)
    assert default.tolist() == [1]
    # Box corners on pixel edges: rows 40-60, columns 100-180, end-exclusive.
    (x0, y1), (x1, y0) = corner_xy(100, 40), corner_xy(180, 60)
    np.testing.assert_allclose(prompt_box_from_map((x0, y0, x1, y1), geo), (40, 100, 60, 180))


def test_a_point_in_the_outer_half_of_an_edge_pixel_is_that_pixels_centre(geo) -> None:
    x, y = corner_xy(0.2, 0.1)  # inside pixel (0, 0), nearer its corner than its centre
    points, _ = prompt_points_from_map([(x, y)], geo, shape=SHAPE)
    np.testing.assert_allclose(points, [(0.0, 0.0)])


def test_polygons_and_multipoints_from_a_geopackage_in_web_mercator(tmp_path, geo) -> None:
    # A rectangle on pixel edges (rows 30-70, columns 50-120), densified so that it keeps
    # its shape through both reprojections, and two points of one feature.
    rect = shapely.segmentize(shapely.box(*corner_xy(50, 70), *corner_xy(120, 30)), 0.5)
    mercator = shapely.transform(rect, lambda xy: np.column_stack(to_crs("EPSG:3857", *xy.T)))
    xs, ys = zip(centre_xy(40, 60), centre_xy(41, 62))
    multi = shapely.multipoints(np.column_stack(to_crs("EPSG:3857", xs, ys)))
    path = tmp_path / "prompts.gpkg"
    write_vector(path, [mercator, multi], "EPSG:3857", label=np.array([1, 0]))
    box, pair = read_prompt_features(path, geo, SHAPE)
    assert box.fids == (1,) and not box.points  # a GeoPackage counts features from 1
    np.testing.assert_allclose(box.box, (30, 50, 70, 120), atol=1e-3)
    assert pair.fids == (2,) and pair.labels == (0, 0) and pair.box is None
    np.testing.assert_allclose(pair.points, [(40, 60), (41, 62)], atol=1e-3)


def test_a_shapefile_without_crs_needs_one_named_and_a_flat_line_a_flat_box(tmp_path, geo) -> None:
    line = shapely.linestrings([corner_xy(10, 20.5), corner_xy(90, 20.5)])  # along row 20.5
    with pytest.warns(UserWarning, match="'crs' was not provided"):  # pyogrio's, as meant
        path = write_vector(tmp_path / "lines.shp", [line], None, note=np.array(["a"]))
    with pytest.raises(TileSAMError, match=r"does not say which CRS.*crs="):
        read_prompt_features(path, geo, SHAPE)
    (found,) = read_prompt_features(path, geo, SHAPE, crs=UTM)
    assert found.fids == (0,)
    np.testing.assert_allclose(found.box, (20.0, 10, 21.0, 90))


def test_merged_features_make_one_prompt(tmp_path, geo) -> None:
    xs, ys = zip(centre_xy(10, 10), centre_xy(12, 14))
    box = shapely.box(*corner_xy(20, 40), *corner_xy(30, 25))
    path = write_vector(tmp_path / "one.geojson", [*shapely.points(xs, ys), box], UTM)
    merged = merge_features(read_prompt_features(path, geo, SHAPE))
    assert merged.fids == (0, 1, 2) and merged.prompt_id == "0,1,2"
    kwargs = merged.as_prompt()
    np.testing.assert_allclose(kwargs["points"], [(10, 10), (12, 14)], atol=1e-9)
    assert kwargs["labels"] == [1, 1]
    np.testing.assert_allclose(kwargs["box"], (25, 20, 40, 30), atol=1e-9)
    with pytest.raises(TileSAMError, match="at least one"):
        merge_features([])


@needs_aerial
def test_the_solaris_fields_land_on_their_footprints_in_the_scene() -> None:
    geo = _georeference(SCENE)
    with rasterio.open(SCENE) as dataset:
        shape = dataset.shape
    # The file has no "crs" member, so GDAL reads it as WGS 84; its numbers are the scene's.
    with pytest.raises(TileSAMError, match="not longitude / latitude"):
        read_prompt_features(FIELDS, geo, shape)
    found = read_prompt_features(FIELDS, geo, shape, crs=geo.crs)
    _, fids, wkb, _ = pyogrio.raw.read(FIELDS, return_fids=True)
    assert [f.fids[0] for f in found] == fids.tolist() and len(found) == 19
    # Each field's pixels on a canvas 64 pixels wider each side, as fields cross the edge.
    pad = 64
    canvas = Affine(*geo.transform) @ Affine.translation(-pad, -pad)
    for feature, field in zip(found, shapely.from_wkb(wkb)):
        footprint = rasterio.features.rasterize(
            [field], out_shape=(shape[0] + 2 * pad, shape[1] + 2 * pad), transform=canvas
        )
        rows, cols = np.nonzero(footprint)
        pixels = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        np.testing.assert_allclose(feature.box, np.subtract(pixels, pad), atol=1)
        assert 0 < feature.box[2] and feature.box[0] < shape[0]  # in the scene, maybe
        assert 0 < feature.box[3] and feature.box[1] < shape[1]  # past its edge


def test_prompts_outside_the_scene_are_named_with_the_scenes_bounds(tmp_path, geo) -> None:
    xs, ys = zip(centre_xy(10, 10), centre_xy(-5, 10), centre_xy(10, 400))
    lon, lat = to_crs("EPSG:4326", xs, ys)
    far = shapely.box(lon[0] + 1, lat[0] + 1, lon[0] + 2, lat[0] + 2)
    path = write_vector(tmp_path / "p.geojson", [*shapely.points(lon, lat), far], "EPSG:4326")
    with pytest.raises(TileSAMError) as caught:
        read_prompt_features(path, geo, SHAPE)
    message = str(caught.value)
    assert "features 1, 2, 3." in message and "EPSG:4326" in message
    west, south, east, north = transform_bounds(UTM, "EPSG:4326", *geo_bounds())
    assert f"x {west:.8g} to {east:.8g}" in message and f"y {south:.8g} to {north:.8g}" in message
    with pytest.raises(TileSAMError, match=r"point 1 .* lie|Outside the scene: point 1"):
        prompt_points_from_map(np.column_stack([lon, lat]), geo, crs=4326, shape=SHAPE)
    with pytest.raises(TileSAMError, match="Outside the scene: box"):
        prompt_box_from_map(far.bounds, geo, crs="EPSG:4326", shape=SHAPE)


def geo_bounds() -> tuple[float, float, float, float]:
    (x0, y1), (x1, y0) = corner_xy(0, 0), corner_xy(SHAPE[1], SHAPE[0])
    return x0, y0, x1, y1


def test_crs_that_cannot_be_read_are_named(tmp_path, geo) -> None:
    with pytest.raises(TileSAMError, match=r"Cannot read the prompts' CRS 'EPSG:999999'.*EPSG:"):
        prompt_points_from_map([(402010, 5100990)], geo, crs="EPSG:999999")
    path = write_vector(tmp_path / "p.geojson", [shapely.Point(402010, 5100990)], UTM)
    with pytest.raises(TileSAMError, match="Cannot read the prompts' CRS 'not a crs'"):
        read_prompt_features(path, geo, SHAPE, crs="not a crs")
    with pytest.raises(TileSAMError, match="Cannot read the CRS ''"):
        read_crs("")
    assert read_crs(read_crs(UTM)) == read_crs(32633)


@pytest.mark.parametrize("geo_none", [None, GeoReference("", tuple(GRID)[:6])])
def test_a_raster_without_crs_takes_no_map_prompts(tmp_path, geo_none) -> None:
    path = write_vector(tmp_path / "p.geojson", [shapely.Point(402010, 5100990)], UTM)
    for call in (
        lambda: prompt_points_from_map([(402010, 5100990)], geo_none, crs=UTM),
        lambda: prompt_box_from_map((402010, 5100980, 402020, 5100990), geo_none),
        lambda: read_prompt_features(path, geo_none, SHAPE),
    ):
        with pytest.raises(TileSAMError, match=r"no CRS.*prompts in pixels"):
            call()


def test_bad_files_layers_labels_and_geometries_are_refused(tmp_path, geo) -> None:
    point = shapely.Point(*centre_xy(5, 5))
    junk = tmp_path / "junk.geojson"
    junk.write_text("this is not GeoJSON")
    with pytest.raises(TileSAMError, match="Cannot read '.*junk.geojson' as a vector file"):
        read_prompt_features(junk, geo, SHAPE)
    with pytest.raises(TileSAMError, match="does not exist"):
        read_prompt_features(tmp_path / "missing.gpkg", geo, SHAPE)
    empty = write_vector(tmp_path / "empty.geojson", [], UTM)
    with pytest.raises(TileSAMError, match="holds no features"):
        read_prompt_features(empty, geo, SHAPE)
    two = tmp_path / "two.gpkg"
    for name in ("clicks", "fields"):
        wkb = shapely.to_wkb(np.array([point]))
        pyogrio.raw.write(
            two, wkb, [], [], layer=name, crs=UTM, geometry_type="Point", append=two.exists()
        )
    with pytest.raises(TileSAMError, match=r"holds 2 layers \(clicks, fields\)"):
        read_prompt_features(two, geo, SHAPE)
    with pytest.raises(TileSAMError, match="has no layer 'roads'"):
        read_prompt_features(two, geo, SHAPE, layer="roads")
    assert read_prompt_features(two, geo, SHAPE, layer="fields")[0].points == ((5.0, 5.0),)


def test_labels_other_than_0_and_1_and_negative_boxes_are_refused(tmp_path, geo) -> None:
    points = [shapely.Point(*centre_xy(5, i)) for i in range(3)]
    labels = np.array(["1", "yes", "2"], dtype=object)
    path = write_vector(tmp_path / "l.geojson", points, UTM, label=labels)
    with pytest.raises(TileSAMError, match=r"feature 1: 'yes', feature 2: '2'"):
        read_prompt_features(path, geo, SHAPE)
    box = shapely.box(*corner_xy(20, 40), *corner_xy(30, 25))
    path = write_vector(tmp_path / "b.geojson", [box], UTM, label=np.array([0]))
    with pytest.raises(TileSAMError, match="Features 0 are lines or polygons with label 0"):
        read_prompt_features(path, geo, SHAPE)
    with pytest.raises(TileSAMError, match=r"point 0: 3\.0"):
        prompt_points_from_map([(402010, 5100990, 3)], geo)


def test_features_without_geometry_are_named(tmp_path, geo) -> None:
    path = tmp_path / "holes.geojson"
    path.write_text(
        '{"type": "FeatureCollection", "features": ['
        '{"type": "Feature", "properties": {}, "geometry": {"type": "Point", '
        '"coordinates": [402010, 5100990]}},'
        '{"type": "Feature", "properties": {}, "geometry": null}]}'
    )
    with pytest.raises(TileSAMError, match=r"Features 1 of .* have no geometry"):
        read_prompt_features(path, geo, SHAPE, crs=UTM)


def test_pixel_point_inverts_map_point_also_when_rotated() -> None:
    rotated = GeoReference(UTM, (0.3, 0.4, 1000.0, 0.4, -0.3, 2000.0))
    rows, cols = np.array([0.0, 12.5, 99.25]), np.array([3.0, 0.5, 7.75])
    x, y = rotated.map_point(rows, cols)
    back = rotated.pixel_point(x, y)
    np.testing.assert_allclose(back, (rows, cols), atol=1e-9)
    with pytest.raises(TileSAMError, match="singular"):
        GeoReference(UTM, (1.0, 1.0, 0.0, 1.0, 1.0, 0.0)).pixel_point(0.0, 0.0)
    assert PromptFeature((4,), box=(0, 0, 1, 1)).as_prompt()["points"] is None


def _georeference(path):
    """The georeference GDAL reads with the raster's pixels."""
    from tilesam.io import open_image

    with open_image(path) as source:
        return source.georeference
