"""`TileGrid`: overlapping model-input tiles over one slice, and the region each one owns.

Layout along one axis of length ``n`` (the same rule for y and x)::

    stride = tile_size - 2 * halo
    tile t covers  [t * stride, t * stride + tile_size)        clipped to [0, n)
    tile t owns    [t * stride + halo, (t + 1) * stride + halo)  first from 0, last to n

so neighbouring tiles overlap by ``2 * halo`` and every owned pixel has at least
``halo`` pixels of context inside its tile on every side that is not an image border.
The owned ("inner") regions partition the image: each pixel belongs to exactly one
tile, which is the tile used for a prompt at that pixel. Edge tiles are clipped, not
shifted, so a tile's actual size can be smaller than ``tile_size`` (the model pads).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from tilesam.errors import TileSAMError

Region2D = tuple[slice, slice]
#: A tile of a (possibly 3D) image: ``(z, ty, tx)``, slice and tile row and column.
TileIndex = tuple[int, int, int]
#: Context (pixels) each tile shares with a neighbour, unless a cache or a user says otherwise.
DEFAULT_HALO = 64


class TileGrid:
    """Tiles of ``tile_size`` with ``halo`` overlap over a ``(H, W)`` slice.

    Parameters
    ----------
    slice_shape : (int, int)
        ``(H, W)`` of the image (one slice of a volume; every slice uses the same grid).
    tile_size : int
        Edge length of a tile, the model's input size.
    halo : int
        Context shared with each neighbour; must leave a positive stride,
        ``tile_size - 2 * halo >= 1``.

    Examples
    --------
    >>> grid = TileGrid((2000, 3000), tile_size=1024, halo=64)
    >>> grid.grid_shape, grid.n_tiles
    ((3, 4), 12)
    >>> grid.tile_region(0, 1)
    (slice(0, 1024, None), slice(896, 1920, None))
    >>> grid.tile_for_point(1000, 10)
    (1, 0)
    """

    def __init__(
        self, slice_shape: Sequence[int], tile_size: int = 1024, halo: int = DEFAULT_HALO
    ) -> None:
        if len(slice_shape) != 2 or not all(_is_int(n) and n > 0 for n in slice_shape):
            raise TileSAMError(
                f"slice_shape must be two positive integers (H, W), got {tuple(slice_shape)}."
            )
        if not _is_int(tile_size) or tile_size < 1:
            raise TileSAMError(f"tile_size must be a positive integer, got {tile_size!r}.")
        if not _is_int(halo) or halo < 0:
            raise TileSAMError(f"halo must be an integer >= 0, got {halo!r}.")
        if tile_size - 2 * halo < 1:
            raise TileSAMError(
                f"halo={halo} is too large for tile_size={tile_size}: tiles overlap by "
                f"2 * halo, which must be less than tile_size. Use halo <= {(tile_size - 1) // 2}."
            )
        self.slice_shape = (int(slice_shape[0]), int(slice_shape[1]))
        self.tile_size = int(tile_size)
        self.halo = int(halo)
        self.stride = self.tile_size - 2 * self.halo
        self.grid_shape = tuple(self._count(n) for n in self.slice_shape)

    def _count(self, n: int) -> int:
        # Enough tiles that the last one reaches the end: (k - 1) * stride + tile_size >= n.
        return 1 + max(0, math.ceil((n - self.tile_size) / self.stride))

    # -- grid -------------------------------------------------------------------------------
    @property
    def n_tiles(self) -> int:
        """Number of tiles per slice."""
        return self.grid_shape[0] * self.grid_shape[1]

    def __len__(self) -> int:
        return self.n_tiles

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """All ``(ty, tx)`` in row-major order."""
        for ty in range(self.grid_shape[0]):
            for tx in range(self.grid_shape[1]):
                yield (ty, tx)

    def __repr__(self) -> str:
        return (
            f"TileGrid(slice_shape={self.slice_shape}, tile_size={self.tile_size}, "
            f"halo={self.halo}) -> grid {self.grid_shape}"
        )

    # -- regions ----------------------------------------------------------------------------
    def tile_region(self, ty: int, tx: int) -> Region2D:
        """The pixels a tile covers, halo included, clipped to the image."""
        self._check_tile(ty, tx)
        return (self._span(ty, 0), self._span(tx, 1))

    def tile_shape(self, ty: int, tx: int) -> tuple[int, int]:
        """Actual ``(h, w)`` of a tile; smaller than ``tile_size`` at the image's far edges."""
        ys, xs = self.tile_region(ty, tx)
        return (ys.stop - ys.start, xs.stop - xs.start)

    def inner_region(self, ty: int, tx: int) -> Region2D:
        """The pixels this tile owns; the inner regions of all tiles partition the image."""
        self._check_tile(ty, tx)
        return (self._owned(ty, 0), self._owned(tx, 1))

    def tile_origin(self, ty: int, tx: int) -> tuple[int, int]:
        """Image coordinates ``(y, x)`` of the tile's first pixel."""
        self._check_tile(ty, tx)
        return (ty * self.stride, tx * self.stride)

    def _span(self, t: int, axis: int) -> slice:
        start = t * self.stride
        return slice(start, min(start + self.tile_size, self.slice_shape[axis]))

    def _owned(self, t: int, axis: int) -> slice:
        start = 0 if t == 0 else t * self.stride + self.halo
        last = t == self.grid_shape[axis] - 1
        stop = self.slice_shape[axis] if last else (t + 1) * self.stride + self.halo
        return slice(start, stop)

    # -- lookups ----------------------------------------------------------------------------
    def tile_for_point(self, y: float, x: float) -> tuple[int, int]:
        """The tile whose inner region contains pixel ``(y, x)`` (floats are floored).

        Raises
        ------
        TileSAMError
            If the point is outside the image.
        """
        h, w = self.slice_shape
        if not (0 <= y < h and 0 <= x < w):
            raise TileSAMError(
                f"Point (y={y}, x={x}) is outside the image of shape (H={h}, W={w}); "
                "coordinates are (y, x) in pixels, 0 <= y < H and 0 <= x < W."
            )
        return (self._index(y, 0), self._index(x, 1))

    def _index(self, v: float, axis: int) -> int:
        t = (math.floor(v) - self.halo) // self.stride
        return min(max(t, 0), self.grid_shape[axis] - 1)

    def tiles_for_box(self, y0: float, x0: float, y1: float, x1: float) -> list[tuple[int, int]]:
        """Tiles whose inner regions intersect the end-exclusive box, row-major.

        A box reaching past the image is clipped to it; an empty box, or one entirely
        outside the image, raises `TileSAMError`.
        """
        h, w = self.slice_shape
        if not (y1 > y0 and x1 > x0):
            raise TileSAMError(
                f"Box (y0={y0}, x0={x0}, y1={y1}, x1={x1}) is empty: boxes are "
                "(y0, x0, y1, x1) with y1 > y0 and x1 > x0 (end-exclusive)."
            )
        cy0, cx0 = max(math.floor(y0), 0), max(math.floor(x0), 0)
        cy1, cx1 = min(math.ceil(y1), h), min(math.ceil(x1), w)
        if cy0 >= cy1 or cx0 >= cx1:
            raise TileSAMError(
                f"Box (y0={y0}, x0={x0}, y1={y1}, x1={x1}) lies outside the image of shape "
                f"(H={h}, W={w})."
            )
        ty0, tx0 = self.tile_for_point(cy0, cx0)
        ty1, tx1 = self.tile_for_point(cy1 - 1, cx1 - 1)
        return [(ty, tx) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    def _check_tile(self, ty: int, tx: int) -> None:
        ny, nx = self.grid_shape
        if not (0 <= ty < ny and 0 <= tx < nx):
            raise TileSAMError(
                f"Tile ({ty}, {tx}) does not exist: the grid has {ny} x {nx} tiles "
                f"(ty < {ny}, tx < {nx})."
            )


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)
