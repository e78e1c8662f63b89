"""Image sources on real files: TIFF / OME-TIFF / ImageJ, zarr / OME-Zarr, arrays."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from tilesam.errors import TileSAMError
from tilesam.io import ArraySource, ImageSource, TiffSource, ZarrSource, guess_axes, open_image

RNG = np.random.default_rng(0)


def _img(*shape: int, dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(0, 1000, size=shape).astype(dtype)


# -- arrays ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "axes"),
    [((20, 30), "YX"), ((20, 30, 2), "YXC"), ((20, 30, 3), "YXC"), ((20, 30, 4), "YXC"),
     ((5, 20, 30), "ZYX"), ((5, 20, 30, 2), "ZYXC")],
)  # fmt: skip
def test_array_axes_are_guessed(shape: tuple[int, ...], axes: str) -> None:
    src = ArraySource(np.zeros(shape, np.uint8))
    assert src.axes == axes == guess_axes(shape)
    assert src.shape == shape
    assert src.n_slices == (shape[0] if axes.startswith("Z") else 1)
    assert src.slice_shape == (20, 30)
    assert src.spacing == (1.0,) * src.spatial_ndim
    assert src.origin == (0.0,) * src.spatial_ndim
    assert src.georeference is None


@pytest.mark.parametrize(("shape", "axes"), [((20, 30, 1), "YX"), ((5, 20, 30, 1), "ZYX")])
def test_array_single_channel_axis_is_dropped(shape: tuple[int, ...], axes: str) -> None:
    # An (H, W, 1) image is one 2D plane, not H slices of W x 1 pixels.
    data = RNG.integers(0, 255, size=shape).astype(np.uint8)
    src = ArraySource(data)
    assert src.axes == axes
    assert src.slice_shape == (20, 30)
    last = src.n_slices - 1
    expected = data.reshape(-1, 20, 30)[last, 2:5, 3:9]
    np.testing.assert_array_equal(src.read_slice(last, (slice(2, 5), slice(3, 9))), expected)


@pytest.mark.parametrize("dtype", [np.complex64, object])
def test_pixels_that_are_not_numbers_are_refused(dtype) -> None:
    with pytest.raises(TileSAMError, match="pixels: TileSAM reads integer, float or boolean"):
        open_image(np.zeros((64, 80), dtype))


def test_array_read_region_and_slices() -> None:
    vol = _img(4, 50, 60)
    src = ArraySource(vol, spacing=(3.0, 0.5, 0.5))
    np.testing.assert_array_equal(src.read((slice(1, 3), slice(5, 9), slice(50, 70))),
                                  vol[1:3, 5:9, 50:60])  # fmt: skip
    np.testing.assert_array_equal(src.read_slice(2, (slice(0, 10), slice(3, 4))), vol[2, :10, 3:4])
    np.testing.assert_array_equal(src.read(), vol)
    img = ArraySource(vol[0])  # a 2D image is a volume of one slice
    assert img.n_slices == 1
    np.testing.assert_array_equal(img.read_slice(0), vol[0])
    with pytest.raises(TileSAMError, match="Slice 1 is outside"):
        img.read_slice(1)


def test_read_returns_a_copy() -> None:
    a = np.zeros((10, 10), np.uint8)
    out = ArraySource(a).read()
    out[:] = 7
    assert a.sum() == 0


def test_axes_override_moves_channels_last() -> None:
    cyx = _img(3, 20, 30)
    src = ArraySource(cyx, axes="CYX")
    assert (src.axes, src.shape) == ("YXC", (20, 30, 3))
    np.testing.assert_array_equal(
        src.read((slice(2, 5), slice(0, 30))), cyx[:, 2:5].transpose(1, 2, 0)
    )
    czyx = _img(2, 4, 8, 9)
    src = ArraySource(czyx, axes="czyx")
    assert src.axes == "ZYXC"
    np.testing.assert_array_equal(src.read_slice(3), czyx[:, 3].transpose(1, 2, 0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"axes": "YXQ"}, "unknown axis"), ({"axes": "YX"}, "do not match"),
     ({"axes": "YYX"}, "twice"), ({"spacing": (1.0,)}, "spacing"),
     ({"spacing": (1.0, 0.0, 1.0)}, "positive")],
)  # fmt: skip
def test_array_argument_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(TileSAMError, match=match):
        ArraySource(np.zeros((2, 8, 8)), **kwargs)


def test_guess_fails_for_5d_and_bad_regions() -> None:
    with pytest.raises(TileSAMError, match="pass axes="):
        ArraySource(np.zeros((1, 2, 3, 4, 5)))
    src = ArraySource(np.zeros((8, 8)))
    with pytest.raises(TileSAMError, match="tuple of 2 slices"):
        src.read((slice(0, 2),))
    with pytest.raises(TileSAMError, match="step 1"):
        src.read((slice(0, 8, 2), slice(0, 8)))


def test_dask_array_reads_only_the_chunks_it_needs() -> None:
    # Chunks outside the first one fail when computed: reading inside it must still work.
    def block(block_info: dict | None = None) -> np.ndarray:
        loc = block_info[None]["chunk-location"]
        if loc != (0, 0):
            raise RuntimeError(f"chunk {loc} was computed")
        return np.full(block_info[None]["chunk-shape"], 5, np.uint8)

    arr = da.map_blocks(block, chunks=((32, 32), (32, 32)), dtype=np.uint8)
    src = open_image(arr)
    assert src.read((slice(0, 30), slice(2, 20))).tolist() == np.full((30, 18), 5).tolist()
    with pytest.raises(TileSAMError, match="Could not read region"):
        src.read()


# -- TIFF --------------------------------------------------------------------------------------
def test_plain_tiff_roundtrip(tmp_path) -> None:
    img = _img(300, 400)
    tifffile.imwrite(tmp_path / "a.tif", img)
    with open_image(tmp_path / "a.tif") as src:
        assert isinstance(src, TiffSource)
        assert (src.axes, src.shape, src.dtype) == ("YX", (300, 400), np.uint16)
        np.testing.assert_array_equal(src.read((slice(10, 20), slice(390, 500))), img[10:20, 390:])
    with pytest.raises(TileSAMError, match="is closed"):
        src.read()


def test_big_endian_tiff_reports_native_dtype(tmp_path) -> None:
    img = _img(30, 40)
    tifffile.imwrite(tmp_path / "be.tif", img, byteorder=">")
    src = open_image(tmp_path / "be.tif")
    assert src.dtype == np.dtype("uint16") and src.dtype.isnative
    np.testing.assert_array_equal(src.read(), img)


def test_rgb_tiled_compressed_tiff(tmp_path) -> None:
    rgb = _img(200, 260, 3, dtype="uint8")
    tifffile.imwrite(
        tmp_path / "rgb.tiff", rgb, photometric="rgb", tile=(64, 64), compression="zlib"
    )
    src = open_image(tmp_path / "rgb.tiff")
    assert (src.axes, src.n_channels) == ("YXC", 3)
    np.testing.assert_array_equal(src.read((slice(60, 140), slice(100, 101))), rgb[60:140, 100:101])


def test_tiled_tiff_region_read_is_lazy(tmp_path) -> None:
    img = _img(512, 512)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, img, tile=(128, 128), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        spans = list(zip(page.dataoffsets, page.databytecounts, strict=True))
    # Destroy every compressed tile except tile (row 1, col 0): any read that decodes
    # another tile fails, so a correct region read proves only that tile was read.
    with open(path, "r+b") as f:
        for i, (offset, count) in enumerate(spans):
            if i != 1 * 4 + 0:
                f.seek(offset)
                f.write(b"\xff" * count)
    src = open_image(path)
    np.testing.assert_array_equal(src.read((slice(130, 250), slice(0, 100))), img[130:250, :100])
    with pytest.raises(TileSAMError, match="big.tif"):
        src.read()


def test_ome_tiff_volume_spacing_and_channels(tmp_path) -> None:
    vol = _img(5, 2, 40, 50)  # Z C Y X
    meta = {"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 2.0}
    tifffile.imwrite(tmp_path / "v.ome.tif", vol, metadata=meta, compression="zlib")
    src = open_image(tmp_path / "v.ome.tif")
    assert (src.axes, src.shape) == ("ZYXC", (5, 40, 50, 2))
    assert src.spacing == (2.0, 0.25, 0.5)
    np.testing.assert_array_equal(src.read_slice(4, (slice(1, 3), slice(0, 5))),
                                  vol[4, :, 1:3, :5].transpose(1, 2, 0))  # fmt: skip


def test_ome_tiff_pyramid_levels(tmp_path) -> None:
    img = _img(512, 384)
    path = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        meta = {"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
        tw.write(img, subifds=2, tile=(128, 128), compression="zlib", metadata=meta)
        tw.write(img[::2, ::2], subfiletype=1, tile=(128, 128), compression="zlib")
        tw.write(img[::4, ::4], subfiletype=1, tile=(128, 128), compression="zlib")
    src = open_image(path)
    assert (src.shape, src.n_levels, src.level, src.spacing) == ((512, 384), 3, 0, (0.25, 0.25))
    low = open_image(path, level=2)
    assert (low.shape, low.spacing) == ((128, 96), (1.0, 1.0))
    np.testing.assert_array_equal(low.read(), img[::4, ::4])
    with pytest.raises(TileSAMError, match="level=3 does not exist"):
        open_image(path, level=3)


def test_imagej_hyperstack_calibration(tmp_path) -> None:
    vol = _img(3, 20, 30)
    tifffile.imwrite(tmp_path / "ij.tif", vol, imagej=True, resolution=(4.0, 4.0),
                     metadata={"spacing": 1.5, "unit": "um", "axes": "ZYX"})  # fmt: skip
    src = open_image(tmp_path / "ij.tif")
    assert (src.axes, src.spacing) == ("ZYX", (1.5, 0.25, 0.25))


def test_page_stack_becomes_a_volume_and_axes_override(tmp_path) -> None:
    stack = _img(3, 20, 30)
    # Pages without axes metadata: tifffile calls the page axis "I", read as Z.
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack", metadata=None)
    src = open_image(tmp_path / "s.tif")
    assert src.axes == "ZYX"
    np.testing.assert_array_equal(src.read(), stack)
    # Three pages that are really channels: the caller says so.
    src = open_image(tmp_path / "s.tif", axes="CYX")
    assert (src.axes, src.shape) == ("YXC", (20, 30, 3))
    np.testing.assert_array_equal(src.read(), stack.transpose(1, 2, 0))


def test_tiff_source_pickles_by_path(tmp_path) -> None:
    img = _img(64, 64)
    tifffile.imwrite(tmp_path / "p.tif", img, tile=(32, 32))
    src = pickle.loads(pickle.dumps(open_image(tmp_path / "p.tif")))
    np.testing.assert_array_equal(src.read(), img)


def test_truncated_tiff_raises(tmp_path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _img(256, 256), tile=(64, 64), compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TileSAMError, match=r"cut\.tif.*truncated"):
        open_image(path)
    path.write_bytes(data[:6])  # header only
    with pytest.raises(TileSAMError, match=r"cut\.tif"):
        open_image(path)


@pytest.mark.parametrize(
    "kwargs", [{"imagej": True, "metadata": {"axes": "ZYX"}}, {"tile": (64, 64)}]
)
def test_truncated_stack_is_not_opened_as_its_first_slices(tmp_path, kwargs) -> None:
    # tifffile logs a broken page chain and falls back to the pages it found.
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.stack([_img(128, 128)] * 12), **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    with pytest.raises(TileSAMError, match=r"stack\.tif' is truncated or damaged"):
        open_image(path)


def test_not_a_tiff_raises(tmp_path) -> None:
    (tmp_path / "fake.tif").write_bytes(b"definitely not a tiff file")
    with pytest.raises(TileSAMError, match="fake.tif"):
        open_image(tmp_path / "fake.tif")


# -- zarr / OME-Zarr ---------------------------------------------------------------------------
def test_plain_zarr_array(tmp_path) -> None:
    vol = _img(3, 40, 50)
    zarr.create_array(tmp_path / "v.zarr", data=vol, chunks=(1, 16, 16))
    src = open_image(tmp_path / "v.zarr")
    assert isinstance(src, ZarrSource) and src.axes == "ZYX"
    np.testing.assert_array_equal(src.read((slice(1, 2), slice(10, 30), slice(45, 50))),
                                  vol[1:2, 10:30, 45:])  # fmt: skip
    assert pickle.loads(pickle.dumps(src)).read().tolist() == vol.tolist()


def test_zarr_v2_array_and_axes_override(tmp_path) -> None:
    cyx = _img(3, 20, 30)
    zarr.create_array(tmp_path / "v2.zarr", data=cyx, chunks=(1, 10, 10), zarr_format=2)
    src = open_image(tmp_path / "v2.zarr", axes="CYX")
    assert src.axes == "YXC"
    np.testing.assert_array_equal(src.read(), cyx.transpose(1, 2, 0))


def _write_ngff(path, levels: list[np.ndarray], axes: list[dict], *, version: str) -> None:
    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(path, mode="w", zarr_format=fmt)
    datasets = []
    for i, arr in enumerate(levels):
        group.create_array(str(i), data=arr, chunks=(1,) * (arr.ndim - 2) + (16, 16))
        scale = [1.0] * (arr.ndim - 3) + [2.0, 0.5 * 2**i, 0.5 * 2**i]
        datasets.append({"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": [0.0] * (arr.ndim - 3) + [10.0, 0.0, 0.0]},
        ]})  # fmt: skip
    ms = [{"version": version, "axes": axes, "datasets": datasets}]
    group.attrs.update(
        {"multiscales": ms}
        if version == "0.4"
        else {"ome": {"version": version, "multiscales": ms}}
    )


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_multiscale(tmp_path, version: str) -> None:
    vol = _img(2, 4, 32, 48)  # c z y x
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"
    ]
    _write_ngff(tmp_path / "img.ome.zarr", [vol, vol[:, :, ::2, ::2]], axes, version=version)
    src = open_image(tmp_path / "img.ome.zarr")
    assert (src.axes, src.shape, src.n_levels) == ("ZYXC", (4, 32, 48, 2), 2)
    assert src.spacing == (2.0, 0.5, 0.5)
    assert src.origin == (10.0, 0.0, 0.0)
    np.testing.assert_array_equal(src.read_slice(1), vol[:, 1].transpose(1, 2, 0))
    low = open_image(tmp_path / "img.ome.zarr", level=1)
    assert (low.shape, low.spacing) == ((4, 16, 24, 2), (2.0, 1.0, 1.0))
    with pytest.raises(TileSAMError, match="level=2 does not exist"):
        open_image(tmp_path / "img.ome.zarr", level=2)


def test_ome_zarr_time_axis(tmp_path) -> None:
    axes = [{"name": "t", "type": "time"}] + [{"name": n, "type": "space"} for n in "yx"]
    _write_ngff(tmp_path / "t1.zarr", [_img(1, 32, 32)], axes, version="0.4")
    assert open_image(tmp_path / "t1.zarr").axes == "YX"  # a single time point is dropped
    _write_ngff(tmp_path / "t3.zarr", [_img(3, 32, 32)], axes, version="0.4")
    with pytest.raises(TileSAMError, match="time point"):
        open_image(tmp_path / "t3.zarr")


def test_bioformats2raw_layout(tmp_path) -> None:
    axes = [{"name": n, "type": "space"} for n in "zyx"]
    _write_ngff(tmp_path / "b.zarr" / "0", [_img(2, 32, 32)], axes, version="0.4")
    zarr.open_group(tmp_path / "b.zarr", mode="a", zarr_format=2).attrs["bioformats2raw.layout"] = 3
    assert open_image(tmp_path / "b.zarr").shape == (2, 32, 32)


def test_zarr_group_without_multiscales(tmp_path) -> None:
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("only", data=_img(20, 20), chunks=(10, 10))
    assert open_image(tmp_path / "g.zarr").shape == (20, 20)
    group.create_array("other", data=_img(20, 20), chunks=(10, 10))
    with pytest.raises(TileSAMError, match=r"holds 2 arrays \(members: \['only', 'other'\]\)"):
        open_image(tmp_path / "g.zarr")
    assert open_image(tmp_path / "g.zarr" / "other").shape == (20, 20)


# -- dispatch ----------------------------------------------------------------------------------
def test_open_image_dispatch_and_errors(tmp_path) -> None:
    arr = np.zeros((8, 8))
    src = open_image(arr)
    assert isinstance(src, ArraySource) and open_image(src) is src
    assert isinstance(open_image(zarr.create_array(tmp_path / "z.zarr", data=arr)), ImageSource)
    with pytest.raises(TileSAMError, match=r"No such file.*nope\.tif"):
        open_image(tmp_path / "nope.tif")
    (tmp_path / "photo.gif").write_bytes(b"GIF89a")
    with pytest.raises(TileSAMError, match=r"unsupported file type '\.gif'"):
        open_image(tmp_path / "photo.gif")
    (tmp_path / "folder").mkdir()
    with pytest.raises(TileSAMError, match="not a zarr store"):
        open_image(tmp_path / "folder")
    with pytest.raises(TileSAMError, match="single level"):
        open_image(arr, level=1)
