"""Rasters read by GDAL: real files of several formats written with rasterio and read back
window by window, bands chosen, nodata kept out of statistics, tiles and masks, scenes
reprojected through a warped view."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from tilesam.cache.embed import embed_tiles
from tilesam.cache.memory import MemoryStore
from tilesam.cache.normalisation import image_normalisation, intensity_of
from tilesam.cache.tiling import TileGrid
from tilesam.errors import TileSAMError
from tilesam.io import open_image
from tilesam.io.raster import RasterSource
from tilesam.segment.session import Session

UTM = CRS.from_epsg(32633)
NORTH_UP = Affine(0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0)  # 0.5 m pixels, UTM 33N


def _write(path, bands: np.ndarray, driver: str = "GTiff", **profile) -> str:
    settings = {"driver": driver, "count": bands.shape[0], "height": bands.shape[1],
                "width": bands.shape[2], "dtype": bands.dtype.name, "crs": UTM,
                "transform": NORTH_UP}  # fmt: skip
    with rasterio.open(path, "w", **{**settings, **profile}) as dataset:
        dataset.write(bands)
    return str(path)


@pytest.fixture
def rgb() -> np.ndarray:
    yy, xx = np.mgrid[:200, :300]
    return np.stack([(xx % 251), (yy % 241), (xx + yy) % 239]).astype(np.uint8)


@pytest.mark.parametrize(
    ("suffix", "driver", "profile"),
    [
        (".tif", "GTiff", {"tiled": True, "blockxsize": 128, "blockysize": 128}),
        (".jp2", "JP2OpenJPEG", {"QUALITY": 100, "REVERSIBLE": "YES"}),
        (".img", "HFA", {}),
        (".gpkg", "GPKG", {}),
    ],
)
def test_gdal_formats_read_window_by_window_with_their_map_grid(
    tmp_path, rgb, suffix, driver, profile
) -> None:
    path = _write(tmp_path / f"scene{suffix}", rgb, driver, **profile)
    with open_image(path) as source:
        assert isinstance(source, RasterSource)
        assert source.axes == "YXC" and source.shape == (200, 300, 3)
        block = source.read((slice(37, 101), slice(250, 300)))
        np.testing.assert_array_equal(block, rgb[:, 37:101, 250:300].transpose(1, 2, 0))
        assert source.georeference.transform == tuple(NORTH_UP)[:6]
        assert CRS.from_wkt(source.georeference.crs) == UTM
        assert source.spacing == (0.5, 0.5)


def test_a_vrt_mosaic_reads_across_its_two_files(tmp_path, rgb) -> None:
    left = _write(tmp_path / "left.tif", np.ascontiguousarray(rgb[:1, :, :150]))
    right_transform = NORTH_UP @ Affine.translation(150, 0)
    right = _write(tmp_path / "right.tif", np.ascontiguousarray(rgb[:1, :, 150:]),
                   transform=right_transform)  # fmt: skip
    sources = "".join(
        f"<SimpleSource><SourceFilename relativeToVRT='1'>{name}</SourceFilename>"
        f"<SourceBand>1</SourceBand><SrcRect xOff='0' yOff='0' xSize='150' ySize='200'/>"
        f"<DstRect xOff='{x}' yOff='0' xSize='150' ySize='200'/></SimpleSource>"
        for name, x in (("left.tif", 0), ("right.tif", 150))
    )
    gt = ", ".join(str(v) for v in NORTH_UP.to_gdal())
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text(
        f"<VRTDataset rasterXSize='300' rasterYSize='200'><SRS>{UTM.to_wkt()}</SRS>"
        f"<GeoTransform>{gt}</GeoTransform><VRTRasterBand dataType='Byte' band='1'>"
        f"{sources}</VRTRasterBand></VRTDataset>"
    )
    assert left and right
    with open_image(vrt) as source:
        assert source.axes == "YX"
        np.testing.assert_array_equal(source.read((slice(0, 200), slice(140, 160))),
                                      rgb[0, :, 140:160])  # fmt: skip


def test_bands_are_chosen_one_based_and_a_wrong_choice_says_what_exists(tmp_path) -> None:
    bands = np.arange(5 * 40 * 50, dtype=np.uint16).reshape(5, 40, 50)
    path = _write(tmp_path / "multispectral.tif", bands)
    with open_image(path, bands=(4, 3, 2)) as source:
        np.testing.assert_array_equal(source.read()[..., 0], bands[3])
        assert source.bands == (4, 3, 2)
    with open_image(path, bands=[5]) as source:
        assert source.axes == "YX"
    with open_image(path) as every:  # a viewer shows every band
        assert every.shape == (40, 50, 5)
        with pytest.raises(TileSAMError, match=r"has 5 channels.*--bands 4,3,2"):
            Session(every)  # the encoder sees one band or three
    with pytest.raises(TileSAMError, match=r"bands=\[6\].*has 5 band"):
        open_image(path, bands=[6])


def test_multispectral_scaling_is_per_band_over_the_whole_scene_without_nodata(tmp_path) -> None:
    rng = np.random.default_rng(0)
    bands = np.stack([rng.integers(100, 200, (120, 160)), rng.integers(2000, 6000, (120, 160)),
                      rng.integers(0, 50, (120, 160))]).astype(np.uint16)  # fmt: skip
    bands[:, :, :40] = 65535  # a nodata margin that would drag every range
    path = _write(tmp_path / "scene.tif", bands, nodata=65535)
    with open_image(path) as source:
        assert source.has_nodata
        norm = image_normalisation(source)
    low, high = intensity_of(norm)
    assert norm["method"] == "percentiles-per-band" and len(low) == 3
    for band, lo, hi in zip(bands[:, :, 40:], low, high):
        assert band.min() <= lo < np.percentile(band, 2) and np.percentile(band, 98) < hi
        assert hi <= band.max()


def test_a_scene_that_is_all_nodata_is_refused(tmp_path) -> None:
    path = _write(tmp_path / "empty.tif", np.zeros((1, 64, 64), np.uint16), nodata=0)
    with open_image(path) as source, pytest.raises(TileSAMError, match="Every pixel .* nodata"):
        image_normalisation(source)


def test_tiles_without_data_are_never_embedded_and_masks_leave_nodata_out(
    tmp_path, tiny, monkeypatch
) -> None:
    image = np.zeros((1, 256, 512), np.uint8)
    image[0, 96:160, 96:160] = 200  # a bright square in the left half
    image[0, :, 256:] = 255  # the right half: nodata
    path = _write(tmp_path / "half.tif", image, nodata=255)
    source = open_image(path)
    grid = TileGrid(source.slice_shape, tile_size=256, halo=0)
    store = MemoryStore((1, *grid.grid_shape), (256, 64, 64))
    encoded = []
    original = tiny.embed_batch

    def counted(tiles, **options):
        encoded.extend(tiles)
        return original(tiles, **options)

    monkeypatch.setattr(tiny, "embed_batch", counted)
    embed_tiles(tiny, source, grid, store, store.missing_tiles(), intensity=(0, 255),
                progress=False)  # fmt: skip
    assert len(encoded) == 1 and store.missing_tiles() == []
    assert not store.read_tile(0, 0, 1).any()  # the nodata tile: zeros, never encoded
    session = Session(path, model=tiny, tile_size=256, halo=16, progress=False)
    result = session.segment(box=(90, 90, 166, 300))  # a box reaching into the nodata half
    assert result.area > 0 and not result.mask[:, 256:].any()


def test_a_warped_view_reprojects_window_by_window(tmp_path, rgb) -> None:
    path = _write(tmp_path / "utm.tif", rgb)
    with open_image(path, crs="EPSG:4326") as source:
        geo = source.georeference
        assert CRS.from_wkt(geo.crs) == CRS.from_epsg(4326)
        assert source.has_nodata  # the corners outside the rotated scene hold no data
        h, w = source.slice_shape
        assert source.valid(0, (slice(h // 2 - 5, h // 2 + 5), slice(w // 2 - 5, w // 2 + 5))).all()
        x, y = geo.map_point(h / 2, w / 2)
        east, north = rasterio.warp.transform("EPSG:4326", UTM, [x], [y])
        assert abs(east[0] - (402000 + 75)) < 1.0 and abs(north[0] - (5101000 - 50)) < 1.0
    with open_image(path, crs="EPSG:32633", resolution=1.0) as coarser:
        assert coarser.slice_shape == (100, 150)
    with pytest.raises(TileSAMError, match="not a coordinate reference system"):
        open_image(path, crs="EPSG:999999")


def test_overviews_are_the_pyramid_and_sources_travel_by_path(tmp_path, rgb) -> None:
    path = _write(tmp_path / "cog.tif", rgb, tiled=True, blockxsize=128, blockysize=128)
    with rasterio.open(path, "r+") as dataset:
        dataset.build_overviews([2, 4], rasterio.enums.Resampling.average)
    with open_image(path, level=2) as level:
        assert level.n_levels == 3 and level.slice_shape == (50, 75)
        assert level.georeference.pixel_size == (2.0, 2.0)
        copy = pickle.loads(pickle.dumps(level))
        np.testing.assert_array_equal(copy.read(), level.read())
    with pytest.raises(TileSAMError, match="level=3 does not exist"):
        open_image(path, level=3)


def test_raster_options_are_refused_where_they_mean_nothing(tmp_path) -> None:
    with pytest.raises(TileSAMError, match="apply to raster files"):
        open_image(np.zeros((8, 8), np.uint8), bands=[1])


def test_an_object_s_mask_does_not_depend_on_the_extent_embedded(tmp_path, tiny) -> None:
    """Embedding only a part of a scene (extent=) fills the whole scene's grid and keeps its
    intensity range, so a click there gives the mask a fully embedded scene gives; a file
    cut to that part has statistics, and so masks, of its own."""
    rng = np.random.default_rng(5)
    field = rng.normal(3000, 150, (2, 768, 1024))
    field[:, 300:360, 700:780] += 2500  # a bright roof
    field[:, :, :256] += 20000  # a bright area outside the part: it drives the statistics
    scene = field.clip(0, 65535).astype(np.uint16)[[0, 1, 0]]
    path = _write(tmp_path / "scene.tif", scene)
    whole = Session(path, model=tiny, cache=tmp_path / "whole.zarr", tile_size=256, halo=16)
    whole.embed(progress=False)
    part = Session(path, model=tiny, cache=tmp_path / "part.zarr", tile_size=256, halo=16)
    assert part.embed(progress=False, extent=(256, 512, 512, 1024)) == 2 * 3  # tiles met
    click = [(330, 740)]
    in_whole, in_part = whole.segment(points=click), part.segment(points=click)
    assert in_whole.area > 500 and np.array_equal(in_whole.mask, in_part.mask)
    assert len(part.missing_tiles()) == whole.grid.n_tiles - 6  # the rest never embedded
    cut = _write(tmp_path / "cut.tif", np.ascontiguousarray(scene[:, 256:512, 512:1024]),
                 transform=NORTH_UP @ Affine.translation(512, 256))  # fmt: skip
    assert Session(cut, model=tiny).intensity != whole.intensity


def test_segment_everything_finds_nothing_on_nodata_and_labels_keep_a_nodata_value(
    tmp_path, tiny
) -> None:
    image = np.full((1, 256, 512), 30, np.uint8)
    yy, xx = np.indices((256, 512))
    for cy, cx in ((64, 64), (180, 150), (64, 320), (180, 420)):  # two discs in each half
        image[0][(yy - cy) ** 2 + (xx - cx) ** 2 < 30**2] = 200
    image[0, :, 256:][image[0, :, 256:] == 30] = 0  # the right half: nodata around its discs
    path = _write(tmp_path / "half.tif", image, nodata=0)
    session = Session(path, model=tiny, tile_size=256, halo=16)
    result = session.segment_everything(mode="grid", points_per_side=8)
    assert result.n_objects > 0
    valid = open_image(path).valid(0)
    assert not (result.labels.astype(bool) & ~valid).any()
    with pytest.warns(UserWarning, match="no map position"):
        open_image(_write(tmp_path / "unplaced.tif", image, transform=Affine.identity()))
    result.save(tmp_path / "labels.tif", like=session.source)
    with rasterio.open(tmp_path / "labels.tif") as written:
        assert written.nodata == 0 and written.crs == UTM and written.block_shapes[0] == (256, 256)
