"""GeoTIFF: CRS and transform read with the pixels (lazily), labels written back onto the
same map grid, real files written by GDAL (rasterio) and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tilesam.cli import main
from tilesam.io import open_image, write_labels
from tilesam.io.geo import GeoReference
from tilesam.samples import sample_path

UTM = CRS.from_epsg(32633)
NORTH_UP = Affine(0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0)  # 0.5 m pixels, UTM 33N
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "aerial"


@pytest.fixture
def scene(tmp_path, write_geotiff) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    bands = rng.integers(0, 3000, (3, 300, 400)).astype(np.uint16)
    return Path(write_geotiff(tmp_path / "scene.tif", bands, NORTH_UP, crs=UTM, nodata=0)), bands


def test_geotiff_reports_crs_transform_and_pixel_centres(scene) -> None:
    path, bands = scene
    with open_image(path) as source:
        geo = source.georeference
        assert source.axes == "YXC" and source.shape == (300, 400, 3)
        assert CRS.from_wkt(geo.crs) == UTM and geo.transform == tuple(NORTH_UP)[:6]
        assert geo.nodata == 0 and geo.north_up
        assert source.spacing == (0.5, 0.5)
        # Pixel (0, 0)'s centre, in napari's (-northing, easting) world.
        assert source.origin == (-(5101000.0 - 0.25), 402000.0 + 0.25)
        region = source.read((slice(100, 140), slice(250, 300)))
    np.testing.assert_array_equal(region, np.moveaxis(bands[:, 100:140, 250:300], 0, -1))


def test_labels_written_over_a_geotiff_keep_its_map_grid(scene, tmp_path) -> None:
    path, _ = scene
    labels = np.zeros((300, 400), np.uint16)
    labels[20:60, 30:90] = 1
    labels[200:290, 300:390] = 700
    with open_image(path) as source:
        out = write_labels(tmp_path / "fields.tif", labels, like=source)
    with rasterio.open(out) as dataset:
        assert dataset.crs == UTM and dataset.transform == NORTH_UP
        np.testing.assert_array_equal(dataset.read(1), labels)
    with open_image(out) as back:
        assert back.georeference.transform == tuple(NORTH_UP)[:6]


def test_plain_tiff_labels_stay_ome_tiff_without_a_georeference(tmp_path) -> None:
    labels = np.eye(64, dtype=np.uint8)
    out = write_labels(tmp_path / "plain.tif", labels, spacing=(0.2, 0.2))
    with open_image(out) as back:
        assert back.georeference is None and back.spacing == (0.2, 0.2)


@pytest.mark.parametrize("transform", [NORTH_UP, NORTH_UP @ Affine.rotation(25.0)])
def test_layer_geometry_places_pixel_centres_at_minus_northing_easting(transform) -> None:
    """napari's world (y, x) of a pixel centre is (-map y, map x), for rotated grids too."""
    geo = GeoReference(UTM.to_wkt(), tuple(transform)[:6])
    layer = geo.layer_geometry()
    if "affine" in layer:
        matrix = np.asarray(layer["affine"])
        to_world = lambda r, c: (matrix @ [r, c, 1.0])[:2]  # noqa: E731
    else:
        scale, shift = np.asarray(layer["scale"]), np.asarray(layer["translate"])
        to_world = lambda r, c: shift + scale * [r, c]  # noqa: E731
    assert ("affine" in layer) == (transform != NORTH_UP)
    for row, col in [(0, 0), (10, 250), (299, 3)]:
        x, y = transform @ (col + 0.5, row + 0.5)
        np.testing.assert_allclose(to_world(row, col), (-y, x), rtol=0, atol=1e-6)


def test_overview_levels_carry_their_coarser_transform(tmp_path, write_geotiff) -> None:
    image = (np.arange(512 * 512) % 997).astype(np.uint16).reshape(512, 512)
    path = write_geotiff(tmp_path / "pyramid.tif", image, NORTH_UP, crs=UTM)
    with rasterio.open(path, "r+") as dataset:
        dataset.build_overviews([2], rasterio.enums.Resampling.nearest)
    with open_image(path, level=1) as level:
        assert level.slice_shape == (256, 256) and level.spacing == (1.0, 1.0)
        assert level.georeference.map_point(0, 0) == NORTH_UP @ (0, 0)  # same corner
        assert level.georeference.map_point(256, 256) == NORTH_UP @ (512, 512)


def test_aerial_sample_labels_overlay_the_field_polygons() -> None:
    """Every pixel of each sample field, placed by the georeference read with the pixels,
    lies inside that field's GeoJSON polygon: same grid, same orientation, no flip."""
    polygons = SHARED / "solaris_geotiff_custom_proj_labels.geojson"
    if not polygons.is_file():
        pytest.skip(f"shared data not found at {SHARED} (only on the project's machines)")
    from skimage.measure import points_in_poly

    with (
        open_image(sample_path("aerial")) as image,
        open_image(sample_path("aerial").with_name("aerial_labels.tif")) as labels,
    ):
        assert labels.georeference.transform == image.georeference.transform
        assert labels.georeference.crs == image.georeference.crs
        grid = labels.read()
        inverse = ~Affine(*image.georeference.transform)
    features = json.loads(polygons.read_text())["features"]
    for fid, feature in enumerate(features, start=1):
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        pixels = np.array([inverse @ tuple(p) for p in ring])  # (col, row)
        inside = np.argwhere(grid == fid)[:, ::-1] + 0.5  # pixel centres as (col, row)
        assert inside.size and points_in_poly(inside, pixels).mean() > 0.99


def test_segment_on_a_geotiff_writes_a_geotiff(scene, tmp_path, random_tiny) -> None:
    path, _ = scene
    checkpoint = tmp_path / "random.pt"
    import torch

    torch.save(random_tiny(0).sam.state_dict(), checkpoint)
    out = tmp_path / "mask.tif"
    argv = f"segment {path} --checkpoint {checkpoint} --point 150,200 --out {out}"
    assert main(argv.split()) == 0
    with rasterio.open(out) as dataset:
        assert dataset.crs == UTM and dataset.transform == NORTH_UP
        assert dataset.shape == (300, 400)


def test_a_crs_without_a_transform_is_a_plain_image(tmp_path, write_geotiff) -> None:
    """GDAL reports "no transform" as the identity (e = +1): taken literally it would flip
    the image upside down, so such a file opens unplaced."""
    image = np.arange(2000, dtype=np.uint8).reshape(40, 50)
    path = write_geotiff(tmp_path / "crs_only.tif", image, crs=UTM)
    with open_image(path) as source:
        assert source.georeference is None
        assert source.spacing == (1.0, 1.0) and source.origin == (0.0, 0.0)
