"""TileGrid: tiles cover the image, inner regions partition it, lookups agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tilesam.cache.tiling import TileGrid
from tilesam.errors import TileSAMError


@st.composite
def grids(draw: st.DrawFn, max_side: int = 5000, min_tile: int = 1) -> TileGrid:
    tile = draw(st.integers(min_tile, 300))
    halo = draw(st.integers(0, (tile - 1) // 2))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    return TileGrid((h, w), tile_size=tile, halo=halo)


def _axis_checks(grid: TileGrid, axis: int) -> None:
    n, count = grid.slice_shape[axis], grid.grid_shape[axis]
    pick = (lambda t: (t, 0)) if axis == 0 else (lambda t: (0, t))
    owned = [grid.inner_region(*pick(t))[axis] for t in range(count)]
    tiles = [grid.tile_region(*pick(t))[axis] for t in range(count)]
    # Inner regions are non-empty, consecutive, and run from 0 to n: a partition.
    assert owned[0].start == 0 and owned[-1].stop == n
    assert all(o.stop > o.start for o in owned)
    assert all(a.stop == b.start for a, b in zip(owned, owned[1:], strict=False))
    for t, (o, s) in enumerate(zip(owned, tiles, strict=True)):
        # Each tile lies in the image, contains what it owns, is full size unless clipped,
        # and keeps `halo` pixels of context around its inner region except at borders.
        assert 0 <= s.start < s.stop <= n
        assert s.start <= o.start and o.stop <= s.stop
        assert s.stop - s.start == min(grid.tile_size, n - s.start)
        assert o.start == 0 or o.start - s.start >= grid.halo
        assert o.stop == n or s.stop - o.stop >= grid.halo
        assert s.start == t * grid.stride
    # The grid is as small as possible: without its last tile the image is not covered.
    assert count == 1 or tiles[-2].stop < n


@settings(max_examples=200, deadline=None)
@given(grids())
def test_inner_regions_partition_and_tiles_cover(grid: TileGrid) -> None:
    _axis_checks(grid, 0)
    _axis_checks(grid, 1)


@settings(max_examples=200, deadline=None)
@given(grids(), st.data())
def test_tile_for_point_is_the_owner(grid: TileGrid, data: st.DataObject) -> None:
    h, w = grid.slice_shape
    y = data.draw(st.floats(0, h, exclude_max=True))
    x = data.draw(st.floats(0, w, exclude_max=True))
    ty, tx = grid.tile_for_point(y, x)
    iy, ix = grid.inner_region(ty, tx)
    assert iy.start <= int(y) < iy.stop and ix.start <= int(x) < ix.stop
    # The owner's tile holds the point, at its offset from the tile's origin.
    oy, ox = grid.tile_origin(ty, tx)
    th, tw = grid.tile_shape(ty, tx)
    assert 0 <= y - oy < th and 0 <= x - ox < tw


@settings(max_examples=150, deadline=None)
@given(grids(max_side=800, min_tile=16), st.data())
def test_tiles_for_box_matches_brute_force(grid: TileGrid, data: st.DataObject) -> None:
    h, w = grid.slice_shape
    y0, x0 = data.draw(st.integers(-20, h - 1)), data.draw(st.integers(-20, w - 1))
    y1, x1 = data.draw(st.integers(y0 + 1, h + 20)), data.draw(st.integers(x0 + 1, w + 20))
    expected = []
    for ty, tx in grid:
        iy, ix = grid.inner_region(ty, tx)
        if iy.start < y1 and y0 < iy.stop and ix.start < x1 and x0 < ix.stop:
            expected.append((ty, tx))
    if not expected:  # the box misses the image entirely
        with pytest.raises(TileSAMError, match="outside the image"):
            grid.tiles_for_box(y0, x0, y1, x1)
    else:
        assert grid.tiles_for_box(y0, x0, y1, x1) == expected


@pytest.mark.parametrize(
    ("shape", "tile", "halo"),
    [
        ((1, 1), 16, 4),
        ((100, 37), 16, 0),
        ((64, 64), 64, 8),
        ((65, 200), 32, 7),
        ((300, 301), 25, 10),
    ],
)
def test_partition_pixel_by_pixel(shape: tuple[int, int], tile: int, halo: int) -> None:
    grid = TileGrid(shape, tile_size=tile, halo=halo)
    owners = np.zeros(shape, np.int32)
    covered = np.zeros(shape, np.int32)
    for ty, tx in grid:
        owners[grid.inner_region(ty, tx)] += 1
        covered[grid.tile_region(ty, tx)] += 1
        # A tile's origin is the first pixel of the region it covers.
        ys, xs = grid.tile_region(ty, tx)
        assert grid.tile_origin(ty, tx) == (ys.start, xs.start)
    assert (owners == 1).all()
    assert (covered >= 1).all()
    assert len(list(grid)) == grid.n_tiles == len(grid)


def test_documented_layout() -> None:
    grid = TileGrid((2000, 3000), tile_size=1024, halo=64)
    assert (grid.stride, grid.grid_shape, grid.n_tiles) == (896, (3, 4), 12)
    assert grid.tile_region(2, 3) == (slice(1792, 2000), slice(2688, 3000))
    assert grid.tile_shape(2, 3) == (208, 312)  # clipped edge tile: the model pads
    assert grid.inner_region(1, 1) == (slice(960, 1856), slice(960, 1856))
    assert grid.inner_region(0, 0) == (slice(0, 960), slice(0, 960))
    assert grid.tile_for_point(959, 960) == (0, 1)


def test_small_image_is_one_tile() -> None:
    grid = TileGrid((300, 500), tile_size=1024, halo=64)
    assert grid.grid_shape == (1, 1)
    assert grid.tile_region(0, 0) == grid.inner_region(0, 0) == (slice(0, 300), slice(0, 500))


@pytest.mark.parametrize(
    ("args", "match"),
    [(((100, 100), 64, 32), "halo=32 is too large"), (((100, 100), 0, 0), "tile_size"),
     (((100, 100), 64, -1), "halo"), (((0, 100), 64, 8), "slice_shape"),
     (((100,), 64, 8), "slice_shape"), (((100, 100), 64.0, 8), "tile_size")],
)  # fmt: skip
def test_invalid_arguments(args: tuple, match: str) -> None:
    with pytest.raises(TileSAMError, match=match):
        TileGrid(args[0], tile_size=args[1], halo=args[2])


def test_lookup_errors() -> None:
    grid = TileGrid((100, 200), tile_size=64, halo=8)
    with pytest.raises(TileSAMError, match="outside the image"):
        grid.tile_for_point(100, 5)
    with pytest.raises(TileSAMError, match="outside the image"):
        grid.tile_for_point(-0.5, 5)
    with pytest.raises(TileSAMError, match="does not exist"):
        grid.tile_region(5, 0)
    with pytest.raises(TileSAMError, match="is empty"):
        grid.tiles_for_box(10, 10, 10, 20)
    with pytest.raises(TileSAMError, match="outside the image"):
        grid.tiles_for_box(150, 0, 160, 10)
