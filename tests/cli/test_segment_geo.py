"""``tilesam segment`` / ``tilesam auto`` on a georeferenced scene: prompts in map
coordinates and from vector files in another CRS, labels as a GeoTIFF and polygons in a
GeoPackage, all real files written and read back; bad input refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as reproject

from tilesam.cli import main
from tilesam.errors import TileSAMError
from tilesam.io import open_image

UTM = CRS.from_epsg(32633)
GRID = Affine(0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0)  # 0.5 m pixels
ROOFS = [(60, 70, 110, 150), (200, 300, 260, 380), (330, 90, 400, 150)]  # y0, x0, y1, x1
TILING = ["--tile", "256", "--halo", "16"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Bright roofs on a dark field, 480 x 512 pixels, three bands, UTM 33N."""
    root = tmp_path_factory.mktemp("geo")
    rng = np.random.default_rng(2)
    image = rng.normal(60, 6, (3, 480, 512))
    for y0, x0, y1, x1 in ROOFS:
        image[:, y0:y1, x0:x1] = rng.normal(200, 6, (3, y1 - y0, x1 - x0))
    path = root / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=512, height=480, count=3,
                       dtype="uint8", crs=UTM, transform=GRID) as out:  # fmt: skip
        out.write(image.clip(0, 255).astype(np.uint8))
    return root, path


def _lonlat(row: float, col: float) -> tuple[float, float]:
    x, y = GRID * (col, row)
    lon, lat = reproject(UTM, "EPSG:4326", [x], [y])
    return lon[0], lat[0]


def _points_file(path, points) -> str:
    features = [{"type": "Feature", "id": 11 + i, "properties": {"label": 1},
                 "geometry": {"type": "Point", "coordinates": _lonlat(*p)}}
                for i, p in enumerate(points)]  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return str(path)


def test_a_points_file_in_another_crs_gives_one_polygon_per_point(scene, tmp_path) -> None:
    root, image = scene
    centres = [((y0 + y1) / 2, (x0 + x1) / 2) for y0, x0, y1, x1 in ROOFS]
    points = _points_file(tmp_path / "points.geojson", centres)
    labels, vector = tmp_path / "roofs.tif", tmp_path / "roofs.gpkg"
    argv = ["segment", str(image), "--points-file", points, "--out", str(labels),
            "--vector", str(vector), *TILING]  # fmt: skip
    assert main(argv) == 0
    with open_image(labels) as written:
        grid = written.read()
        assert written.georeference.transform == tuple(GRID)[:6]
    meta, _, wkb, fields = pyogrio.raw.read(vector)
    assert CRS.from_user_input(meta["crs"]) == UTM
    columns = dict(zip(meta["fields"], fields))
    assert sorted(columns["prompt_id"]) == [11, 12, 13]
    for geometry, object_id, area, (y, x) in zip(
        shapely.from_wkb(wkb), columns["id"], columns["area"], centres
    ):
        pixels = grid == object_id
        assert area == pytest.approx(pixels.sum() * 0.25)  # 0.5 m pixels, the raster's count
        rows, cols = np.nonzero(pixels)
        corner = GRID * (cols.min(), rows.min())
        far = GRID * (cols.max() + 1, rows.max() + 1)
        np.testing.assert_allclose(geometry.bounds, (corner[0], far[1], far[0], corner[1]))
        assert geometry.contains(shapely.Point(GRID * (x, y)))  # the prompt's roof


def test_one_object_from_map_points_and_a_box(scene, tmp_path) -> None:
    root, image = scene
    y0, x0, y1, x1 = ROOFS[1]
    (xa, ya), (xb, yb) = GRID * (x0 - 3, y1 + 3), GRID * (x1 + 3, y0 - 3)
    out = tmp_path / "roof.tif"
    argv = ["segment", str(image), "--box-xy", f"{xa},{ya},{xb},{yb}", "--out", str(out),
            "--vector", str(tmp_path / "roof.geojson"), *TILING]  # fmt: skip
    assert main(argv) == 0
    mask = open_image(out).read() > 0
    truth = np.zeros_like(mask)
    truth[y0:y1, x0:x1] = True
    assert (mask & truth).sum() / (mask | truth).sum() > 0.8
    lon, lat = _lonlat((y0 + y1) / 2, (x0 + x1) / 2)
    argv = ["segment", str(image), "--point-xy", f"{lon},{lat}", "--prompt-crs", "EPSG:4326",
            "--out", str(tmp_path / "click.tif"), *TILING]  # fmt: skip
    assert main(argv) == 0
    assert (open_image(tmp_path / "click.tif").read() > 0)[(y0 + y1) // 2, (x0 + x1) // 2]


def test_auto_writes_every_object_as_a_polygon(scene, tmp_path) -> None:
    root, image = scene
    vector = tmp_path / "all.gpkg"
    argv = ["auto", str(image), "--mode", "grid", "--out", str(tmp_path / "all.tif"),
            "--vector", str(vector), "--points-per-side", "16", *TILING]  # fmt: skip
    assert main(argv) == 0
    meta, _, wkb, fields = pyogrio.raw.read(vector)
    grid = open_image(tmp_path / "all.tif").read()
    assert len(wkb) == len(np.unique(grid)) - 1 > 0
    assert main(argv) == 2  # the outputs exist now: refused without --overwrite


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--point-xy", "0,0"], "Outside the scene: point 0"),
        (["--point-xy", "1,2", "--prompt-crs", "EPSG:999999"], "EPSG"),
        (["--point", "5,5", "--point-xy", "402010,5100990"], "not both"),
        (["--point-xy", "402010,5100990", "--vector", "out.kml"], "vector format"),
    ],
)
def test_bad_map_prompts_are_refused_with_the_fix(scene, tmp_path, capsys, extra, message):
    root, image = scene
    argv = ["segment", str(image), "--out", str(tmp_path / "m.tif"), *extra, *TILING]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.tif").exists()


def test_map_prompts_on_an_image_without_a_crs_are_refused(tmp_path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((64, 64), np.uint8))
    from tilesam.segment.session import Session

    with pytest.raises(TileSAMError, match="pixel"):
        Session(tmp_path / "plain.tif").segment(points_xy=[(10.0, 10.0)])
