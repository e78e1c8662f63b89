"""Writers: every file is written through `atomic_output`, so a failure mid-write (here the
encoder or the data raising half way) leaves the previous file intact and nothing else;
masks and labels are read back from real files in every format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
import SimpleITK
import tifffile
import zarr
from affine import Affine
from rasterio.crs import CRS

from tilesam.errors import TileSAMError
from tilesam.io import atomic_output, open_image, write_labels, write_mask
from tilesam.io.geo import GeoReference

GEO = GeoReference(CRS.from_epsg(32633).to_wkt(), (0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0))


def _mask(shape: tuple[int, int] = (300, 400)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[40:120, 50:300] = True
    mask[-5:, -7:] = True  # the last tile of each row and column is written too
    return mask


def _read_mask(path: Path) -> np.ndarray:
    if path.suffix == ".png":
        return iio.imread(path)
    with open_image(path) as source:
        return source.read()


@pytest.mark.parametrize("name", ["m.tif", "m.png", "m.ome.zarr", "m.TIFF"])
def test_masks_round_trip(tmp_path, name) -> None:
    mask = _mask()
    out = write_mask(tmp_path / name, mask, spacing=(0.5, 0.25), origin=(3.0, 4.0))
    back = _read_mask(out)
    assert back.dtype == np.uint8 and set(np.unique(back)) == {0, 255}
    np.testing.assert_array_equal(back > 0, mask)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_huge_mask_is_written_tile_by_tile_from_its_blocks(tmp_path) -> None:
    calls: list = []
    window = _mask()

    def block(region):  # a 3000 x 2500 mask never held whole: only its window is
        calls.append(region)
        y0, x0, y1, x1 = region
        out = np.zeros((y1 - y0, x1 - x0), bool)
        part = window[y0:y1, x0:x1]
        out[: part.shape[0], : part.shape[1]] = part
        return out

    out = write_mask(tmp_path / "huge.tif", block, shape=(3000, 2500))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.shape == (3000, 2500)
        np.testing.assert_array_equal(page.asarray()[:300, :400] > 0, window)
        assert not page.asarray()[300:].any()
    assert max((y1 - y0) * (x1 - x0) for y0, x0, y1, x1 in calls) == 256 * 256


def test_a_mask_over_a_georeferenced_image_is_a_geotiff(tmp_path) -> None:
    mask = _mask()
    out = write_mask(tmp_path / "field.tif", mask, georeference=GEO)
    with rasterio.open(out) as dataset:
        assert dataset.crs == CRS.from_epsg(32633)
        assert dataset.transform == Affine(*GEO.transform)
        np.testing.assert_array_equal(dataset.read(1) > 0, mask)


def test_mask_paths_are_checked_before_writing(tmp_path) -> None:
    with pytest.raises(TileSAMError, match=r"Unsupported mask file '\.jpg': use \.tif or \.png"):
        write_mask(tmp_path / "m.jpg", _mask())
    with pytest.raises(TileSAMError, match="Could not write the mask to .*does not exist"):
        write_mask(tmp_path / "missing" / "m.tif", _mask())
    with pytest.raises(TileSAMError, match=r"A mask is a 2D \(H, W\) array"):
        write_mask(tmp_path / "m.tif", np.zeros((2, 30, 40), bool))
    (tmp_path / "cache.ome.zarr").mkdir()  # a folder, but not an OME-Zarr image
    with pytest.raises(TileSAMError, match="not an OME-Zarr image"):
        write_mask(tmp_path / "cache.ome.zarr", _mask())
    assert [p.name for p in tmp_path.iterdir()] == ["cache.ome.zarr"]


def _labels(value: int) -> np.ndarray:
    labels = np.zeros((3, 40, 50), np.uint16)
    labels[1, 10:30, 5:45] = value
    return labels


def _fail_on_second_call(function: Callable) -> Callable:
    """`function`, raising at its second call: a write that fails half way."""
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return function(*args, **kwargs)

    return failing


def _break_tifffile(monkeypatch) -> None:
    def imwrite(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\0half")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", imwrite)


def _break_sitk(monkeypatch) -> None:
    def write(image, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(SimpleITK, "WriteImage", write)


def _break_zarr(monkeypatch) -> None:  # after the metadata and the first chunk
    monkeypatch.setattr(zarr.Array, "__setitem__", _fail_on_second_call(zarr.Array.__setitem__))


@pytest.mark.parametrize(
    ("name", "breaker"),
    [("l.tif", _break_tifffile), ("l.nii.gz", _break_sitk), ("l.ome.zarr", _break_zarr)],
)
def test_failed_labels_write_keeps_the_previous_file(tmp_path, monkeypatch, name, breaker):
    path = write_labels(tmp_path / name, _labels(5), spacing=(2.0, 0.5, 0.5))
    breaker(monkeypatch)
    with pytest.raises((TileSAMError, RuntimeError), match="disk full"):
        write_labels(path, _labels(9), spacing=(2.0, 0.5, 0.5))
    monkeypatch.undo()
    with open_image(path) as back:
        np.testing.assert_array_equal(back.read(), _labels(5))
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize(
    ("name", "options"),
    [("m.tif", {}), ("m.png", {}), ("m.ome.zarr", {}), ("g.tif", {"georeference": GEO})],
)
def test_failed_mask_write_keeps_the_previous_file(tmp_path, name, options) -> None:
    big = _mask((2100, 2100))  # more than one block in every format but PNG
    path = write_mask(tmp_path / name, big, **options)
    before = _read_mask(path)
    png = name.endswith(".png")

    def block(region):
        if png or region[:2] != (0, 0):  # PNG asks for one block: the whole mask
            raise OSError("disk full")
        return ~big[: region[2], : region[3]]

    with pytest.raises(TileSAMError, match="Could not write .*disk full"):
        write_mask(path, block, shape=big.shape, **options)
    np.testing.assert_array_equal(_read_mask(path), before)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_an_existing_ome_zarr_is_replaced_whole(tmp_path) -> None:
    path = write_labels(tmp_path / "l.ome.zarr", _labels(5))
    (path / "stray").write_text("from the old image")
    write_labels(path, _labels(9)[:, :20, :30], spacing=(1.0, 2.0, 3.0), origin=(1, 2, 3))
    with open_image(path) as back:
        assert back.spacing == (1.0, 2.0, 3.0) and back.origin == (1.0, 2.0, 3.0)
        np.testing.assert_array_equal(back.read(), _labels(9)[:, :20, :30])
    assert not (path / "stray").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["l.ome.zarr"]


def test_atomic_output_on_interrupt_leaves_nothing(tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "a.ome.zarr") as partial:
        partial.mkdir()
        (partial / "zarr.json").write_text("{}")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
