"""Session: tiling, one intensity range, caching and resume, and objects crossing tile borders.

The model has random weights (TileSAM's `tiny` architecture at a 256-pixel input, so a
tile costs milliseconds): these tests check mechanics (geometry, stitching, caching,
identity of results), never mask quality. The stitching itself is also checked with an
ideal tile predictor on objects whose true shape is known.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from tilesam.cache.embed import prefetch
from tilesam.cache.normalisation import sample_intensity_range
from tilesam.cache.scale import DEFAULT_SLICE_SCALE, default_slice_scale
from tilesam.cache.store import EmbeddingStore
from tilesam.cache.tiling import TileGrid
from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError
from tilesam.io import ArraySource
from tilesam.models.preprocess import intensity_range
from tilesam.segment.result import SegmentResult
from tilesam.segment.session import Session
from tilesam.segment.stitch import derived_points, stitch_segment, touched_neighbours

SHAPE = (400, 500)  # with 256-pixel tiles and halo 32: a 2 x 3 grid


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(100, 400, SHAPE).astype(np.uint16)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    img[(yy - 220) ** 2 + (xx - 230) ** 2 < 70**2] += 3000  # a disc across tile borders
    return img


@pytest.fixture
def tif(tmp_path, image):
    path = tmp_path / "image.tif"
    tifffile.imwrite(path, image, tile=(128, 128), compression="zlib")
    return path


# -- geometry, signature, intensity -------------------------------------------------------------
def test_grid_signature_and_one_intensity_range(tif, image, model, tmp_path) -> None:
    s = Session(tif, model, tmp_path / "c.zarr", halo=32)
    assert s.grid.tile_size == 256 and s.grid_shape == (1, 2, 3) and s.n_done == 0
    sig = EmbeddingStore.open(tmp_path / "c.zarr").signature
    assert sig["model"]["name"] == "tiny-random"
    assert sig["model"]["weights_sha256"] == "random-seed0"
    assert sig["tiling"] == {"tile_size": 256, "halo": 32}
    assert sig["image"]["shape"] == list(SHAPE) and sig["image"]["dtype"] == "<u2"
    assert sig["image"]["content"].startswith("sample-v1:")
    # One range for the whole image (a small image is sampled completely) ...
    assert s.intensity == intensity_range(image) == tuple(sig["normalisation"]["range"])
    # ... applied to every tile: a tile's embedding is the model's on that tile with it.
    tile = image[s.grid.tile_region(0, 2)]
    expected = model.embed(tile, intensity=s.intensity).features.half().float()
    assert torch.equal(torch.from_numpy(s.embedding(0, 0, 2).features), expected)


def test_uint8_is_not_rescaled(model) -> None:
    img = np.random.default_rng(1).integers(0, 256, (200, 300)).astype(np.uint8)
    s = Session(img, model)
    assert s.intensity == (0.0, 255.0) and s.signature["normalisation"]["method"] == "uint8"
    expected = model.embed(img[s.grid.tile_region(0, 0)]).features.half().float()
    assert torch.equal(torch.from_numpy(s.embedding(0, 0, 0).features), expected)


class _CountingSource(ArraySource):
    """An in-memory image that records the size of every read."""

    def __init__(self, array, fail_after: int | None = None) -> None:
        super().__init__(array)
        self.reads: list[int] = []
        self.fail_after = fail_after

    def _read(self, region):
        if self.fail_after is not None and len(self.reads) >= self.fail_after:
            raise OSError("disk unplugged")
        self.reads.append(int(np.prod([s.stop - s.start for s in region])))
        return super()._read(region)


def test_intensity_sample_is_strided_and_read_in_bands() -> None:
    img = np.random.default_rng(2).gamma(2.0, 300.0, (3000, 2500)).astype(np.uint16)
    src = _CountingSource(img)
    low, high = sample_intensity_range(src, budget=200_000)
    step = 6  # floor(sqrt(7.5e6 / 2e5))
    assert (low, high) == intensity_range(img[::step, ::step])
    # Read region by region, never the whole image at once.
    assert len(src.reads) > 1 and max(src.reads) < img.size


# -- embedding: resume, prefetch, memory vs disk ------------------------------------------------
def test_embed_resumes_after_a_failure(image, model, tmp_path) -> None:
    # One tile per batch throughout: batched convolutions may round differently.
    clean = Session(image, model, tmp_path / "clean.zarr", halo=32)
    assert clean.embed(progress=False, batch_size=1) == 6 and clean.embed(progress=False) == 0
    # 16 reads for the content signature, 1 band for the intensity, then 2 tiles: the
    # third tile's read fails.
    src = _CountingSource(image, fail_after=16 + 1 + 2)
    broken = Session(src, model, tmp_path / "c.zarr", halo=32)
    with pytest.raises(TileSAMError, match="disk unplugged"):
        broken.embed(progress=False, batch_size=1)
    done = broken.n_done
    assert 1 <= done < 6
    resumed = Session(image, model, tmp_path / "c.zarr", halo=32)
    assert resumed.n_done == done
    assert resumed.embed(progress=False, batch_size=1) == 6 - done
    a, b = EmbeddingStore.open(tmp_path / "clean.zarr"), EmbeddingStore.open(tmp_path / "c.zarr")
    for tile in a.done_tiles():
        np.testing.assert_array_equal(a.read_tile(*tile), b.read_tile(*tile))


def test_embed_slices_of_a_volume(model) -> None:
    vol = np.random.default_rng(3).integers(0, 1000, (3, 200, 300)).astype(np.uint16)
    s = Session(vol, model)
    assert s.grid_shape == (3, 1, 2)
    assert s.embed(progress=False, slices=[1]) == 2
    assert {t[0] for t in s.missing_tiles()} == {0, 2}
    r = s.segment(points=[(100, 150)], z=1)
    assert r.z == 1 and r.mask.shape == (200, 300)
    with pytest.raises(TileSAMError, match="z=3 does not exist"):
        s.segment(points=[(100, 150)], z=3)


def test_slice_scale_caps_the_magnification_and_signs_the_cache(model, tmp_path) -> None:
    """Tiles are embedded at `slice_scale` (on demand and up front alike), recorded in the
    signature; None keeps SAM's convention and the signature caches had before; "auto" (the
    default) is the volume scale for volumes, SAM's convention for 2D images."""
    vol = np.random.default_rng(4).integers(0, 1000, (3, 64, 48)).astype(np.uint16)
    assert default_slice_scale(ArraySource(vol)) == DEFAULT_SLICE_SCALE
    assert default_slice_scale(ArraySource(vol[0])) is None
    assert Session(vol, model).slice_scale == DEFAULT_SLICE_SCALE
    assert Session(vol[0], model).slice_scale is None
    plain = Session(vol, model, slice_scale=None)
    assert plain.slice_scale is None and "slice_scale" not in plain.signature["tiling"]
    assert plain.embedding(0, 0, 0).input_size == (256, 192)  # SAM's 4x into 256 pixels
    cache = tmp_path / "v.zarr"
    s = Session(vol, model, cache, slice_scale=2)
    assert s.slice_scale == 2.0 and s.signature["tiling"]["slice_scale"] == 2.0
    assert s.embedding(1, 0, 0).input_size == (128, 96)
    assert s.embed(progress=False) == 2
    store = EmbeddingStore.open(cache, mode="r")
    assert {store.read_meta(z, 0, 0)["input_shape"] for z in range(3)} == {(128, 96)}
    # A slice at least as large as the model input is embedded as by SAM, only padded.
    assert Session(np.zeros((2, 300, 100), np.uint8), model, slice_scale=2).slice_scale == 1.0
    with pytest.raises(TileSAMError, match="tiling.slice_scale: cache=2.0, now=3.0"):
        Session(vol, model, cache, slice_scale=3)
    with pytest.raises(TileSAMError, match="tiling.slice_scale: cache=2.0, now='<missing>'"):
        Session(vol, model, cache, slice_scale=None)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "3"):
        with pytest.raises(TileSAMError, match="slice_scale must be a positive number"):
            Session(vol, model, slice_scale=bad)


def test_prefetch_stops_and_forwards_errors() -> None:
    def load(i):
        if i == 3:
            raise ValueError("bad tile")
        return i

    out = []
    with pytest.raises(ValueError, match="bad tile"):
        for _, value in prefetch(range(10), load, depth=2):
            out.append(value)
    assert out == [0, 1, 2]
    first = next(iter(prefetch(range(10**9), lambda i: i)))  # early stop must not hang
    assert first == (0, 0)


def test_memory_and_cache_give_identical_masks(tif, image, model, tmp_path) -> None:
    disk = Session(tif, model, tmp_path / "c.zarr", halo=32)
    memory = Session(image, model, halo=32)
    for prompt in ({"points": [(220, 230)]}, {"box": (150, 160, 290, 300)}):
        a, b = disk.segment(**prompt), memory.segment(**prompt)
        assert a.bbox == b.bbox and np.array_equal(a.window, b.window) and a.score == b.score


# -- cache signature ----------------------------------------------------------------------------
def test_reopen_checks_the_signature(tif, image, model, random_tiny, tmp_path) -> None:
    cache = tmp_path / "c.zarr"
    first = Session(tif, model, cache, halo=32)
    first.embedding(0, 0, 0)
    again = Session(tif, model, cache)  # the cache's tiling is the default
    assert again.grid.halo == 32 and again.intensity == first.intensity and again.n_done == 1
    other = image.copy()
    other[::7] += 1
    cases = [
        ((other, model, cache), {"halo": 32}, "image.content"),
        ((tif, random_tiny(1), cache), {"halo": 32}, "model.weights_sha256"),
        ((tif, model, cache), {"halo": 16}, "tiling.halo"),
        ((tif, model, cache), {"halo": 32, "intensity": (0, 100)}, "normalisation"),
    ]
    for args, kwargs, field in cases:
        with pytest.raises(TileSAMError, match=rf"different inputs.*{field}"):
            Session(*args, **kwargs)
    replaced = Session(other, model, cache, halo=32, overwrite=True)
    assert replaced.n_done == 0
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    with pytest.raises(TileSAMError, match="not a TileSAM embedding cache"):
        Session(tif, model, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"


# -- prompts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [(400, 10)]}, "outside the image"),
        ({"points": [(-1, 10)]}, "outside the image"),
        ({"points": [(10, 10)], "labels": [1, 0]}, "one 1 .positive. or 0"),
        ({"points": [(10, 10)], "labels": [0]}, "needs a positive point or a box"),
        ({"box": (10, 10, 5, 50)}, "is empty"),
        ({"box": (600, 10, 650, 501)}, "lies outside the image"),
        ({}, "needs a positive point or a box"),
    ],
)
def test_bad_prompts(image, model, kwargs, message) -> None:
    with pytest.raises(TileSAMError, match=message):
        Session(image, model, halo=32).segment(**kwargs)


def test_points_a_hair_inside_the_far_edges_are_inside(image, model) -> None:
    # In a tile's float32 coordinates 399.99999999 would round onto the edge, 400.
    session = Session(image, model, halo=32)
    for point in [(SHAPE[0] - 1e-8, 10), (10, SHAPE[1] - 1e-8), (SHAPE[0] - 1e-8, SHAPE[1] - 1e-8)]:
        assert session.segment(points=[point]).area > 0


# -- crossing tile borders with the real model ------------------------------------------------
def test_border_crossing_mechanics(image, model) -> None:
    s = Session(image, model, halo=32)
    grid = s.grid
    result = s.segment(points=[(220, 230)])  # (1, 1)'s owned region starts at 224
    assert result.tiles[0].tile == (0, 1) and result.tiles[0].parent is None
    assert not result.truncated and len({v.tile for v in result.tiles}) > 1
    # Replay every tile's prompt: the last prediction of each tile is what was stitched.
    masks = {}
    for visit in result.tiles:
        origin = np.array(grid.tile_origin(*visit.tile), dtype=float)
        box = None if visit.box is None else np.asarray(visit.box) - np.tile(origin, 2)
        pred = model.predict(
            s.embedding(0, *visit.tile),
            points=visit.points - origin,
            labels=visit.labels,
            box=box,
            multimask=visit.multimask,
        )
        masks[visit.tile] = pred.mask(pred.best)
        if visit.parent is not None:  # a neighbour, reached through a border
            assert max(abs(a - b) for a, b in zip(visit.tile, visit.parent)) == 1
    full, union = result.mask, np.zeros(SHAPE, bool)
    for tile, mask in masks.items():
        # A mask that reaches a border with a neighbour made that neighbour visited ...
        assert set(touched_neighbours(grid, tile, mask, margin=4)) <= set(masks)
        # ... and the result is each visited tile's mask on the region it owns.
        (ys, xs), (oy, ox) = grid.inner_region(*tile), grid.tile_origin(*tile)
        own = mask[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox]
        np.testing.assert_array_equal(full[ys, xs], own)
        union[grid.tile_region(*tile)] |= mask
    owned_by_visited = np.zeros(SHAPE, bool)
    for tile in masks:
        owned_by_visited[grid.inner_region(*tile)] = True
    np.testing.assert_array_equal(full[~owned_by_visited], union[~owned_by_visited])
    assert result.bbox == _bbox(full) and result.area == full.sum()


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


# -- crossing tile borders with an ideal predictor ---------------------------------------------
def _oracle(obj: np.ndarray, grid: TileGrid, calls: list):
    """The true object's pieces in the tile that hold a positive point or meet the box."""

    def predict(ty, tx, points, labels, box, multimask):
        calls.append((ty, tx))
        pieces, _ = ndimage.label(obj[grid.tile_region(ty, tx)])
        ids = {pieces[int(y), int(x)] for (y, x), lab in zip(points, labels) if lab == 1}
        if box is not None:
            y0, x0, y1, x1 = (int(v) for v in box)
            ids |= set(np.unique(pieces[y0:y1, x0:x1]).tolist())
        return np.isin(pieces, sorted(ids - {0})), 1.0

    return predict


def _u_shape() -> np.ndarray:
    u = np.zeros((600, 600), bool)
    u[20:350, 60:90] = u[20:350, 170:200] = u[320:350, 60:200] = True
    return u


def test_objects_come_back_whole_across_tiles() -> None:
    size = (600, 600)
    grid = TileGrid(size, tile_size=256, halo=32)  # 3 x 3 tiles
    yy, xx = np.mgrid[:600, :600]
    disc = (yy - 300) ** 2 + (xx - 290) ** 2 < 250**2  # spans all nine tiles
    calls: list = []
    r = stitch_segment(
        grid, _oracle(disc, grid, calls), Prompt.make([(300, 290)], None, None, size)
    )
    assert np.array_equal(r.mask, disc) and len(set(calls)) == 9 and not r.truncated
    # The U leaves its first tile and comes back: that tile is predicted once more.
    u, calls = _u_shape(), []
    r = stitch_segment(grid, _oracle(u, grid, calls), Prompt.make([(100, 75)], None, None, size))
    assert np.array_equal(r.mask, u) and calls == [(0, 0), (1, 0), (0, 0)]
    # A box larger than a tile: every tile it overlaps answers its clipped part.
    rect = np.zeros((600, 600), bool)
    rect[100:500, 150:450] = True
    r = stitch_segment(
        grid, _oracle(rect, grid, []), Prompt.make(None, None, (90, 140, 510, 460), size)
    )
    assert np.array_equal(r.mask, rect)
    # The cap on predictions: the result is then a part of the object, and says so.
    click = Prompt.make([(300, 290)], None, None, size)
    r = stitch_segment(grid, _oracle(disc, grid, []), click, max_tiles=2)
    assert r.truncated and len(r.tiles) == 2 and (r.mask <= disc).all() and r.area < disc.sum()


def test_touched_neighbours_and_derived_points() -> None:
    grid = TileGrid((600, 600), tile_size=256, halo=32)
    mask = np.zeros((256, 256), bool)
    assert touched_neighbours(grid, (1, 1), mask, margin=4) == []
    mask[100:120, 200:256] = True  # reaches the right edge only
    assert touched_neighbours(grid, (1, 1), mask, margin=4) == [(1, 2)]
    mask[252:256, 252:256] = True  # and the bottom-right corner
    assert touched_neighbours(grid, (1, 1), mask, margin=4) == [(2, 1), (1, 2), (2, 2)]
    edge = np.zeros((256, 256), bool)
    edge[100:120, :3] = True  # tile (0, 0)'s left edge is the image border: no neighbour
    assert touched_neighbours(grid, (0, 0), edge, margin=4) == []
    # Derived points lie in the mask, in the strip the parent owns and the child sees.
    pts = derived_points(grid, (1, 1), (1, 2), mask)
    assert len(pts) == 1
    y, x = pts[0]
    assert mask[int(y) - 192, int(x) - 192] and 384 <= x < 416  # owned by (1, 1), seen by (1, 2)


def test_derived_points_are_the_deepest_pixels_of_the_largest_pieces() -> None:
    grid = TileGrid((600, 600), tile_size=256, halo=32)
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:256, :256]
    for _ in range(10):
        # Blobs of several sizes (ties of depth included) in the strip (1, 1) owns and
        # (1, 2) sees: columns 192..223 of tile (1, 1).
        mask = np.zeros((256, 256), bool)
        for cy, cx, r in zip(rng.integers(0, 256, 5), rng.integers(190, 226, 5), [3, 5, 8, 8, 12]):
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        strip = mask[32:224, 192:224]
        # The reference: every piece and depth computed on the whole strip.
        pieces, n = ndimage.label(strip)
        depth = ndimage.distance_transform_edt(np.pad(strip, 1))[1:-1, 1:-1]
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
        expected = [
            np.unravel_index(int(np.argmax(np.where(pieces == k, depth, -1.0))), strip.shape)
            for k in np.argsort(-sizes, kind="stable")[:3] + 1
        ]
        points = derived_points(grid, (1, 1), (1, 2), mask)
        assert [tuple(p) for p in points - [224, 384]] == expected


def test_result_window_crop_and_tiled_tiff(tmp_path) -> None:
    window = np.zeros((30, 40), bool)
    window[5:25, 3:37] = True
    r = SegmentResult(window, offset=(2000, 3000), shape=(2500, 3500), score=0.5)
    assert r.bbox == (2005, 3003, 2025, 3037) and r.area == 20 * 34
    assert r.crop((2000, 3000, 2010, 3010)).sum() == 5 * 7
    r.save(tmp_path / "m.tif")
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression != 1 and page.shape == (2500, 3500)
        np.testing.assert_array_equal(page.asarray() > 0, r.mask)
    with pytest.raises(TileSAMError, match="use .tif or .png"):
        r.save(tmp_path / "m.jpg")
    empty = SegmentResult(np.zeros((0, 0), bool), (0, 0), (10, 10), 0.0)
    assert empty.bbox is None and empty.mask.shape == (10, 10) and empty.area == 0


@pytest.fixture
def small_disk(tmp_path):
    """A real 160 kB file system (tmpfs): room for the cache's metadata and a few tiles."""
    import subprocess

    mount = tmp_path / "small_disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)])
    if done.returncode:
        pytest.skip("mounting a small tmpfs needs root (the CI machine runs tests as root)")
    yield mount
    gc.collect()  # stores the test opened and did not close: collected, they let go too
    subprocess.run(["umount", str(mount)], check=True)  # "target is busy": something leaked


def test_full_disk_keeps_stored_tiles_and_resumes(image, model, tmp_path, small_disk) -> None:
    import subprocess

    with Session(image, model, small_disk / "c.zarr", halo=32) as session:
        with pytest.raises(TileSAMError, match="Free space on that disk"):
            session.embed(progress=False, batch_size=1)
        done = session.store.n_done
    assert 1 <= done < 6
    # More room, the same call: only the missing tiles are embedded.
    subprocess.run(["mount", "-o", "remount,size=12m", str(small_disk)], check=True)
    with Session(image, model, small_disk / "c.zarr", halo=32) as resumed:
        assert resumed.n_done == done
        assert resumed.embed(progress=False, batch_size=1) == 6 - done
    with Session(image, model, tmp_path / "clean.zarr", halo=32) as clean:
        clean.embed(progress=False, batch_size=1)
    a, b = EmbeddingStore.open(tmp_path / "clean.zarr"), EmbeddingStore.open(small_disk / "c.zarr")
    for tile in a.done_tiles():
        np.testing.assert_array_equal(a.read_tile(*tile), b.read_tile(*tile))
    b.close()
    # Closed, nothing of the cache is held open: the disk can be unmounted (the fixture's).
    assert not [p for p in Path("/proc/self/fd").iterdir() if _points_into(p, small_disk)]


def test_cache_on_a_full_disk_is_refused_cleanly_and_can_be_made_later(
    image, model, small_disk
) -> None:
    import subprocess

    while True:  # fill what is left of the 160 kB, block by block
        try:
            with open(small_disk / "filler", "ab") as f:
                f.write(b"\0" * 4096)
        except OSError:
            break
    with pytest.raises(TileSAMError, match="Could not create the embedding cache .*Free space"):
        Session(image, model, small_disk / "c.zarr", halo=32)
    assert not (small_disk / "c.zarr").exists()  # nothing half-made that would block a retry
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    with Session(image, model, small_disk / "c.zarr", halo=32) as session:
        assert session.n_done == 0 and session.embed(progress=False, batch_size=1) == 6
    assert not [p for p in Path("/proc/self/fd").iterdir() if _points_into(p, small_disk)]


def _points_into(fd_link: Path, folder: Path) -> bool:
    try:
        return str(fd_link.readlink()).startswith(str(folder))
    except OSError:  # closed meanwhile (the listing's own descriptor)
        return False


def test_objects_cross_tiles_without_a_halo() -> None:
    # With halo=0 neighbouring tiles share no pixel: the points cross the border instead.
    size = (600, 600)
    grid = TileGrid(size, tile_size=256, halo=0)  # 3 x 3 tiles
    yy, xx = np.mgrid[:600, :600]
    disc = (yy - 300) ** 2 + (xx - 290) ** 2 < 250**2
    calls: list = []
    r = stitch_segment(
        grid, _oracle(disc, grid, calls), Prompt.make([(300, 290)], None, None, size)
    )
    holding = {
        (ty, tx) for ty, tx in np.ndindex(*grid.grid_shape) if disc[grid.tile_region(ty, tx)].any()
    }
    assert np.array_equal(r.mask, disc) and set(calls) == holding and not r.truncated


def test_saving_a_mask_where_it_cannot_be_written_is_one_clear_error(tmp_path) -> None:
    result = SegmentResult(np.ones((2, 3), bool), offset=(10, 20), shape=(100, 100), score=0.9)
    for name in ("missing/mask.tif", "missing/mask.png"):
        with pytest.raises(TileSAMError, match=r"Could not write the mask to .*mask\.(tif|png)'"):
            result.save(tmp_path / name)


def test_a_two_channel_image_is_refused_with_the_fix(model) -> None:
    # (H, W, 2) is two channels (e.g. two fluorescence stains), not H slices 2 pixels wide.
    with pytest.raises(TileSAMError, match="has 2 channels.*select one channel"):
        Session(np.zeros((64, 80, 2), np.uint16), model)


def test_tiles_not_ready_are_left_waiting() -> None:
    """`ready` keeps the walk off tiles that cannot be predicted now (not embedded): the
    object stops there and the result lists them; the same walk without it is whole."""
    size = (600, 600)
    grid = TileGrid(size, tile_size=256, halo=32)  # 3 x 3 tiles
    yy, xx = np.mgrid[:600, :600]
    disc = (yy - 300) ** 2 + (xx - 290) ** 2 < 250**2
    prompt = Prompt.make([(300, 290)], None, None, size)
    calls: list = []
    r = stitch_segment(grid, _oracle(disc, grid, calls), prompt, ready=lambda ty, tx: ty < 2)
    assert r.waiting == ((2, 0), (2, 1), (2, 2)) and {ty for ty, _ in calls} == {0, 1}
    owned = np.zeros(size, bool)
    for ty, tx in r.waiting:
        owned[grid.inner_region(ty, tx)] = True
    assert np.array_equal(r.mask[~owned], disc[~owned])  # the tiles predicted: exact
    assert r.mask[owned].sum() < disc[owned].sum() and not (r.mask & ~disc).any()
    whole = stitch_segment(grid, _oracle(disc, grid, []), prompt)
    assert np.array_equal(whole.mask, disc) and whole.waiting == ()


def test_segment_without_embedding_answers_from_the_cache_alone(image, model, tmp_path) -> None:
    """embed_missing=False (a GUI's event loop) embeds nothing: the tiles the prompt reaches
    that are not cached are listed as waiting; segmenting again embeds them."""
    session = Session(image, model, tmp_path / "c.zarr", halo=32)
    session.compute_tiles([(0, 0, 0)])
    box = (0, 0, *SHAPE)  # fits in no tile: answered in all six
    partial = session.segment(box=box, embed_missing=False)
    assert session.n_done == 1
    assert [v.tile for v in partial.tiles] == [(0, 0)]
    assert partial.waiting == ((0, 1), (0, 2), (1, 0), (1, 1), (1, 2))
    whole = session.segment(box=box)
    assert session.n_done == 6 and whole.waiting == ()
    assert {v.tile for v in whole.tiles} == {(ty, tx) for ty in range(2) for tx in range(3)}
    again = session.segment(box=box, embed_missing=False)  # all cached now: the same answer
    assert again.waiting == () and np.array_equal(again.mask, whole.mask)
