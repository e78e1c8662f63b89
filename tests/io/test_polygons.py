"""Polygons out: label rasters traced onto the map (holes, windows, shared borders, areas on
the ellipsoid), written as GeoPackage / GeoJSON / Shapefile by GDAL and read back; nothing
half-written left behind."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio.features
import shapely
from affine import Affine

from tilesam.errors import TileSAMError
from tilesam.io import polygons
from tilesam.io.geo import GeoReference, read_crs
from tilesam.io.polygons import PolygonFeature, label_polygons, write_polygons

UTM = GeoReference("EPSG:32633", (0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0))
AERIAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "aerial"
SCENE = AERIAL / "solaris_sample_geotiff_custom_proj.tif"
FIELDS = AERIAL / "solaris_geotiff_custom_proj_labels.geojson"
needs_aerial = pytest.mark.skipif(not FIELDS.is_file(), reason=f"needs {AERIAL} (shared data)")


def read_back(path: Path) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """``(meta, {field: values}, geometries)`` of a vector file, read by GDAL."""
    meta, _, wkb, fields = pyogrio.raw.read(path)
    return meta, dict(zip(meta["fields"], fields)), shapely.from_wkb(wkb)


@needs_aerial
def test_solaris_fields_rasterized_come_back_as_their_polygons(tmp_path) -> None:
    geo = _georeference(SCENE)
    _, fids, wkb, _ = pyogrio.raw.read(FIELDS, return_fids=True)
    fields = shapely.from_wkb(wkb)
    shape = (512, 512)
    # Fields cross the scene's edge: compare with what of each lies in the scene.
    (x0, y0), (x1, y1) = geo.map_point(shape[0], 0), geo.map_point(0, shape[1])
    truth = shapely.intersection(fields, shapely.box(x0, y0, x1, y1))
    labels = rasterio.features.rasterize(
        [(g, i + 1) for i, g in enumerate(fields)], out_shape=shape,
        transform=Affine(*geo.transform), dtype="uint32",
    )  # fmt: skip
    prompt_ids = {i + 1: int(f) for i, f in enumerate(fids)}
    found = label_polygons(labels, geo, scores={1: 0.5}, prompt_ids=prompt_ids)
    assert [f.id for f in found] == list(range(1, len(fields) + 1))
    out = write_polygons(tmp_path / "fields.gpkg", found, geo.crs)
    meta, values, geoms = read_back(out)
    assert read_crs(meta["crs"]) == read_crs(geo.crs)
    assert values["prompt_id"].tolist() == fids.tolist()
    assert values["score"][0] == 0.5 and np.isnan(values["score"][1:]).all()
    pixel = 30.0
    # Rasterizing moves a smooth outline by up to a pixel here and there: over all fields
    # that evens out to within 1 %, and so it does for each field of 200 pixels or more
    # (in a smaller one, one boundary pixel is already 0.5 % of it).
    assert shapely.area(geoms).sum() == pytest.approx(shapely.area(truth).sum(), rel=0.01)
    for i, geom in enumerate(geoms):
        assert values["id"][i] == i + 1
        assert geom.area == (labels == i + 1).sum() * pixel**2  # exactly its pixels
        if truth[i].area >= 200 * pixel**2:
            assert geom.area == pytest.approx(truth[i].area, rel=0.01)
        assert values["area"][i] == pytest.approx(geom.area, rel=1e-9)
        assert values["area_m2"][i] == pytest.approx(geom.area, rel=1e-9)  # metres
        # The outline overlays the raster mask: its bounds are the mask's pixel edges.
        rows, cols = np.nonzero(labels == i + 1)
        left, top = geo.map_point(rows.min(), cols.min())
        right, bottom = geo.map_point(rows.max() + 1, cols.max() + 1)
        np.testing.assert_allclose(geom.bounds, (left, bottom, right, top), atol=1e-6)
        # And lies where the field does: within a pixel, or two where a tip of the field
        # thinner than a pixel misses every pixel centre.
        np.testing.assert_allclose(geom.bounds, truth[i].bounds, atol=2 * pixel)


def test_a_ring_keeps_its_hole_through_geojson(tmp_path) -> None:
    yy, xx = np.mgrid[:80, :80]
    radius = np.hypot(yy - 40, xx - 40)
    labels = ((radius < 30) & (radius >= 12)).astype(np.uint16) * 7
    (ring,) = label_polygons(labels, UTM, prompt_ids={7: "3,5"})
    assert ring.id == 7 and len(ring.geometry.interiors) == 1
    assert ring.area == pytest.approx(labels.astype(bool).sum() * 0.25, rel=1e-12)
    out = write_polygons(tmp_path / "ring.geojson", [ring], UTM.crs)
    meta, values, (geom,) = read_back(out)
    assert read_crs(meta["crs"]).to_epsg() == 32633
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms[0].interiors) == 1
    assert geom.area == pytest.approx(ring.area, rel=1e-12)
    assert values["prompt_id"].tolist() == ["3,5"]
    # The hole is where the raster says: its centre is not in the polygon.
    assert not geom.contains(shapely.Point(UTM.map_point(40.5, 40.5)))


def test_touching_objects_keep_one_shared_border_when_simplified() -> None:
    rows = np.arange(120)[:, None]
    border = 60 + np.round(6 * np.sin(rows / 5)).astype(int)  # a wavy staircase
    labels = np.where(np.arange(120)[None, :] < border, 1, 2).astype(np.uint8)
    labels[:, :5], labels[:, 115:] = 0, 0
    plain = label_polygons(labels, UTM)
    a, b = (f.geometry for f in label_polygons(labels, UTM, simplify=1.0))
    assert shapely.get_num_coordinates(a) < 0.7 * shapely.get_num_coordinates(plain[0].geometry)
    assert a.is_valid and b.is_valid and a.intersection(b).area < 1e-9  # no overlap
    shared = a.boundary.intersection(b.boundary)
    assert shared.length > 120 * 0.5  # the border still runs the height of the image
    assert len(shapely.union_all([a, b]).interiors) == 0  # and no gap opened along it
    assert shapely.union_all([a, b]).geom_type == "Polygon"
    # Simplified one by one, the same outlines no longer meet (the case guarded above).
    alone = [shapely.simplify(f.geometry, 1.0, preserve_topology=True) for f in plain]
    assert alone[0].intersection(alone[1]).area > 1e-6 or shapely.union_all(alone).interiors


def test_a_window_with_its_offset_gives_the_scenes_polygons() -> None:
    scene = np.zeros((100, 120), np.uint32)
    scene[30:50, 60:90] = 4
    scene[35:40, 70:75] = 0
    window = scene[25:60, 55:100]
    whole = label_polygons(scene, UTM)
    part = label_polygons(window, UTM, offset=(25, 55))
    assert [f.id for f in part] == [4]
    assert part[0].geometry.normalize().equals_exact(whole[0].geometry.normalize(), 1e-9)


def test_large_ids_and_disconnected_parts_stay_one_feature() -> None:
    labels = np.zeros((20, 20), np.uint32)
    labels[2:5, 2:5] = labels[10:12, 10:15] = 3_000_000_000  # past int32
    labels[5:7, 5:7] = 3_000_000_000  # touches the first part at a corner only
    (only,) = label_polygons(labels, None)  # no georeference: pixel (x = col, y = row)
    assert only.id == 3_000_000_000 and only.area == 9 + 10 + 4 and only.area_m2 is None
    assert only.geometry.geom_type == "MultiPolygon" and only.geometry.is_valid
    assert only.geometry.bounds == (2.0, 2.0, 15.0, 12.0)


def ellipsoid_quad_area(lon0, lat0, lon1, lat1, a=6378137.0, f=1 / 298.257223563) -> float:
    """Area of a longitude / latitude rectangle on an ellipsoid (the authalic q function)."""
    e = math.sqrt(f * (2 - f))

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return (1 - e * e) * (s / (1 - (e * s) ** 2) + math.atanh(e * s) / e)

    return a * a / 2 * math.radians(lon1 - lon0) * (q(lat1) - q(lat0))


def test_areas_in_a_geographic_crs_come_in_square_metres_too(tmp_path) -> None:
    step = 1e-4  # degrees: about 7 x 11 m pixels at 50 degrees north
    geo = GeoReference("EPSG:4326", (step, 0.0, 10.0, 0.0, -step, 50.0))
    labels = np.zeros((500, 700), np.uint16)
    labels[100:400, 200:600] = 1
    (field,) = label_polygons(labels, geo)
    expected = ellipsoid_quad_area(10.02, 49.96, 10.06, 49.99)
    # On the ellipsoid: a sphere of the same volume would be 0.1 % to 0.3 % off here.
    assert field.area_m2 == pytest.approx(expected, rel=1e-4)
    assert field.area == pytest.approx(300 * 400 * step * step, rel=1e-9)
    # A region 7 x 5 degrees: its edges along parallels curve on the equal-area plane.
    wide = GeoReference("EPSG:4326", (0.01, 0.0, 10.0, 0.0, -0.01, 60.0))
    (region,) = label_polygons(np.ones((500, 700), np.uint8), wide)
    assert region.area_m2 == pytest.approx(ellipsoid_quad_area(10, 55, 17, 60), rel=1e-4)
    out = write_polygons(tmp_path / "deg.shp", [field], geo.crs)
    _, values, _ = read_back(out)
    assert values["area_m2"][0] == pytest.approx(expected, rel=0.01)


def test_no_objects_write_an_empty_layer(tmp_path) -> None:
    assert label_polygons(np.zeros((10, 10), np.uint8), UTM) == []
    for name in ("none.gpkg", "none.shp", "none.geojson"):
        out = write_polygons(tmp_path / name, [], UTM.crs)
        info = pyogrio.read_info(out)
        assert info["features"] == 0 and read_crs(info["crs"]).to_epsg() == 32633
        if not name.endswith(".geojson"):  # GeoJSON learns its fields from its features
            assert list(info["fields"]) == ["id", "area", "area_m2", "score", "prompt_id"]


def test_a_shapefile_is_replaced_whole_only_with_overwrite(tmp_path) -> None:
    labels = np.zeros((10, 10), np.uint8)
    labels[2:4, 2:6] = 1
    features = label_polygons(labels, UTM, scores={1: 0.25}, prompt_ids={1: 12})
    out = write_polygons(tmp_path / "objs.shp", features, UTM.crs)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert {"objs.shp", "objs.shx", "objs.dbf", "objs.prj"} <= set(made)
    with pytest.raises(TileSAMError, match="exists: pass overwrite=True"):
        write_polygons(out, features, UTM.crs)
    (tmp_path / "objs.qix").write_bytes(b"stale index")  # belongs to the old file
    labels[2:4, 2:6] = 9
    write_polygons(out, label_polygons(labels, UTM), UTM.crs, overwrite=True)
    _, values, _ = read_back(out)
    assert values["id"].tolist() == [9]
    assert sorted(p.name for p in tmp_path.iterdir()) == made  # no stale part, no temp


def test_a_failure_mid_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    labels = np.ones((4, 4), np.uint8)
    features = label_polygons(labels, UTM)
    real_write = pyogrio.raw.write

    def write_then_fail(path, *args, **kwargs):
        real_write(path, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyogrio.raw, "write", write_then_fail)
    for name in ("a.gpkg", "a.shp", "a.geojson"):
        with pytest.raises(TileSAMError, match="No space left on device. Free space"):
            write_polygons(tmp_path / name, features, UTM.crs)
    assert list(tmp_path.iterdir()) == []  # no output, no hidden temporary


def test_a_shapefile_failing_while_moved_in_keeps_the_old_one(tmp_path, monkeypatch) -> None:
    labels = np.ones((4, 4), np.uint8)
    out = write_polygons(tmp_path / "old.shp", label_polygons(labels, UTM), UTM.crs)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace, calls = os.replace, []

    def fail_on_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(polygons.os, "replace", fail_on_third)
    with pytest.raises(TileSAMError, match="Could not write"):
        write_polygons(out, label_polygons(labels * 5, UTM), UTM.crs, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_read_only_folder_says_so(read_only_folder) -> None:
    features = label_polygons(np.ones((4, 4), np.uint8), UTM)
    with pytest.raises(TileSAMError, match="Read-only file system. Choose a folder you can"):
        write_polygons(read_only_folder / "objs.gpkg", features, UTM.crs)


def test_formats_crs_and_labels_that_cannot_be_written_are_refused(tmp_path) -> None:
    features = [PolygonFeature(1, shapely.box(0, 0, 1, 1), 1.0)]
    with pytest.raises(TileSAMError, match=r"end its name with \.gpkg"):
        write_polygons(tmp_path / "objs.kml", features, UTM.crs)
    with pytest.raises(TileSAMError, match="Cannot read the polygons' CRS 'EPSG:0'"):
        write_polygons(tmp_path / "objs.gpkg", features, "EPSG:0")
    custom = "+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +datum=WGS84 +units=m"
    with pytest.raises(TileSAMError, match=r"GeoJSON cannot record this CRS.*\.gpkg"):
        write_polygons(tmp_path / "objs.geojson", features, custom)
    write_polygons(tmp_path / "objs.gpkg", features, custom)  # a GeoPackage can
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objs.gpkg"]
    with pytest.raises(TileSAMError, match="2D integer label image"):
        label_polygons(np.ones((4, 4), np.float32), UTM)
    with pytest.raises(TileSAMError, match="are >= 0"):
        label_polygons(-np.ones((4, 4), np.int64), UTM)
    with pytest.raises(TileSAMError, match="simplify must be a tolerance"):
        label_polygons(np.ones((4, 4), np.uint8), UTM, simplify=-1)


def _georeference(path):
    """The georeference GDAL reads with the raster's pixels."""
    from tilesam.io import open_image

    with open_image(path) as source:
        return source.georeference
