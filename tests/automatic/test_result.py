"""AutoResult: labels painted block by block, written to real files with the source's
geometry, and the table of objects in pixels and physical units."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from tilesam.automatic import AutoResult, AutoSettings, Instance
from tilesam.errors import TileSAMError
from tilesam.io import open_image


def disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture
def result2d() -> AutoResult:
    """300 discs over a 1100 x 1300 image (more than 256 ids: uint16 files), some on the
    256-pixel blocks' corners."""
    shape = (1100, 1300)
    objects = []
    for k in range(300):
        y, x = 20 + (k // 20) * 70, 30 + (k % 20) * 62
        window = disc((21, 21), (10, 10), 10)
        objects.append(Instance(window, (y - 10, x - 10), score=0.8, stability=0.9, id=k + 1))
    return AutoResult(objects, shape, "grid", AutoSettings(), spacing=(0.5, 0.25))


def test_blocks_paint_the_same_labels_as_the_whole(result2d) -> None:
    labels = result2d.labels
    assert labels.dtype == np.uint32 and labels.max() == 300
    assert np.array_equal(result2d.block(0, (200, 300, 457, 812)), labels[200:457, 300:812])
    assert np.array_equal(result2d.view()[100:356, 0:256], labels[100:356, :256])


@pytest.mark.parametrize("name", ["labels.tif", "labels.ome.zarr", "labels.nii.gz"])
def test_labels_written_block_by_block_read_back_with_their_geometry(
    result2d, tmp_path, name
) -> None:
    path = result2d.save(tmp_path / name)
    back = open_image(path)
    assert np.array_equal(back.read(), result2d.labels)
    assert back.spacing == pytest.approx((0.5, 0.25))
    assert back.dtype == np.uint16  # the smallest type that holds 300 ids
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no partial file left
    if name.endswith(".tif"):
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].is_tiled


def test_a_volume_result_writes_every_slice(tmp_path) -> None:
    pieces = [Instance(disc((9, 9), (4, 4), 4), (10 * z, 5), z=z, id=1) for z in range(3)]
    pieces.append(Instance(disc((9, 9), (4, 4), 4), (40, 40), z=2, id=2))
    result = AutoResult(pieces, (3, 60, 60), "grid", AutoSettings(), spacing=(2.0, 0.5, 0.5))
    back = open_image(result.save(tmp_path / "v.ome.zarr"))
    assert back.spatial_shape == (3, 60, 60) and back.spacing == (2.0, 0.5, 0.5)
    assert np.array_equal(back.read(), result.labels)
    rows = result.rows()
    assert [r["n_slices"] for r in rows] == [3, 1]
    assert rows[0]["volume"] == 3 * pieces[0].area
    assert rows[0]["volume_physical"] == pytest.approx(rows[0]["volume"] * 0.5)
    assert (rows[0]["bbox_z0"], rows[0]["bbox_z1"]) == (0, 3)


def test_the_table_has_a_row_per_object_in_pixels_and_physical_units(result2d, tmp_path) -> None:
    table = result2d.table
    assert len(table) == 300 and list(table["id"]) == list(range(1, 301))
    first = table.iloc[0]
    assert first["area"] == disc((21, 21), (10, 10), 10).sum()
    assert first["area_physical"] == pytest.approx(first["area"] * 0.125)
    assert (first["centroid_y"], first["centroid_x"]) == pytest.approx((20.0, 30.0))
    path = result2d.save_table(tmp_path / "objects.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300 and rows[0]["mode"] == "grid" and rows[0]["id"] == "1"


def test_an_empty_result_writes_empty_labels_and_a_header(tmp_path) -> None:
    empty = AutoResult([], (40, 50), "grid", AutoSettings())
    assert not open_image(empty.save(tmp_path / "e.tif")).read().any()
    assert empty.save_table(tmp_path / "e.csv").read_text().startswith("id,area,")


def test_bad_output_names_are_refused(result2d, tmp_path) -> None:
    with pytest.raises(TileSAMError, match="Cannot write labels"):
        result2d.save(tmp_path / "labels.jpg")
    with pytest.raises(TileSAMError, match="does not exist"):
        result2d.save(tmp_path / "missing" / "labels.tif")


def test_labels_over_a_georeferenced_image_are_a_geotiff_on_its_grid(tmp_path) -> None:
    from tilesam.samples import sample_path

    source = open_image(sample_path("aerial"))
    h, w = source.slice_shape
    result = AutoResult(
        [Instance(disc((31, 31), (15, 15), 15), (100, 200), id=1)],
        (h, w),
        "grid",
        AutoSettings(),
        georeference=source.georeference,
    )
    back = open_image(result.save(tmp_path / "fields.tif", like=source))
    geo, on = back.georeference, source.georeference
    assert (geo.crs, geo.transform) == (on.crs, on.transform)
    assert np.array_equal(back.read(), result.labels)


def test_a_session_given_with_its_own_options_is_refused(tiny) -> None:
    import tilesam

    session = tilesam.Session(np.zeros((64, 64), np.uint8) + 3, tiny)
    with pytest.raises(TileSAMError, match="leave out cache"):
        tilesam.segment_everything(session, cache="other.zarr")


def test_polygons_of_touching_objects_keep_one_border_and_far_ones_are_traced_apart() -> None:
    """Objects are traced in groups of touching boxes (never the whole label image), so a
    simplification keeps shared borders shared, and each polygon covers its pixels."""
    import shapely

    from tilesam.automatic.polygons import _groups, result_polygons

    yy, xx = np.indices((60, 80))
    left = (yy - 30) ** 2 + (xx - 25) ** 2 < 18**2
    right = ((yy - 30) ** 2 + (xx - 50) ** 2 < 18**2) & ~left  # pressed against `left`
    objects = [Instance.from_mask(left, id=1, score=0.9), Instance.from_mask(right, id=2)]
    far = np.zeros((40, 40), bool)
    far[10:30, 5:35] = True
    objects.append(Instance.from_mask(far, (5000, 7000), id=3))
    result = AutoResult(objects, (6000, 8000), "grid", AutoSettings())
    assert [len(g) for g in _groups(result.objects)] == [2, 1]
    polygons = result_polygons(result, simplify=2.0)
    assert [p.id for p in polygons] == [1, 2, 3] and polygons[0].score == 0.9
    a, b = polygons[0].geometry, polygons[1].geometry
    assert a.intersection(b).area < 1e-6  # simplified, still not overlapping
    assert a.boundary.intersection(b.boundary).length > 10  # and still touching
    assert a.union(b).area == pytest.approx(left.sum() + right.sum(), rel=0.05)
    assert shapely.box(7005, 5010, 7035, 5030).equals(polygons[2].geometry.normalize())
