"""One object's segmentation: a result that stays small for huge images.

A mask of a 20 000 x 20 000 slice is 400 MB as a full boolean array, but an object is
usually a few hundred pixels wide. :class:`SegmentResult` therefore keeps only the
*window*: the mask inside its bounding box, and where that box lies. The full-size
array is built only when ``.mask`` is asked for; ``.save`` writes a full-size TIFF tile
by tile from the window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.io.mask import write_mask
from tilesam.io.source import ImageSource


@dataclass(frozen=True)
class TileVisit:
    """One tile's part in a segmentation: the prompt it got (image coordinates) and its score.

    ``parent`` is the tile whose mask reached into this one, ``None`` for a tile the user's
    prompt chose.
    """

    tile: tuple[int, int]
    points: np.ndarray
    labels: np.ndarray
    box: tuple[float, float, float, float] | None
    multimask: bool
    score: float
    parent: tuple[int, int] | None = None


@dataclass(frozen=True, eq=False)
class SegmentResult:
    """One object's mask, stored as the window around it.

    Attributes
    ----------
    window : numpy.ndarray, bool, shape (h, w)
        The mask inside `bbox` (``(0, 0)`` for an empty mask).
    offset : (int, int)
        ``(y0, x0)`` of the window in the slice.
    shape : (int, int)
        ``(H, W)`` of the whole slice.
    score : float
        Predicted IoU of the mask in the tile the prompt chose.
    z : int
        The slice (0 for a 2D image).
    tiles : tuple of TileVisit
        The tiles that were predicted, in order; more than one when the object crosses
        tile borders.
    truncated : bool
        The object reached further tiles than the ``max_tiles`` cap allowed.
    waiting : tuple of (ty, tx)
        Tiles the object reaches that were left out because they are not embedded yet
        (``Session.segment(..., embed_missing=False)``): segment again once they are.

    Examples
    --------
    >>> window = np.ones((2, 3), bool)
    >>> r = SegmentResult(window, offset=(10, 20), shape=(100, 100), score=0.9)
    >>> r.bbox, r.area, r.mask.shape
    ((10, 20, 12, 23), 6, (100, 100))
    """

    window: np.ndarray
    offset: tuple[int, int]
    shape: tuple[int, int]
    score: float
    z: int = 0
    tiles: tuple[TileVisit, ...] = field(default=(), repr=False)
    truncated: bool = False
    waiting: tuple[tuple[int, int], ...] = ()

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """``(y0, x0, y1, x1)`` of the mask, end-exclusive; ``None`` when it is empty."""
        rows, cols = np.flatnonzero(self.window.any(1)), np.flatnonzero(self.window.any(0))
        if rows.size == 0:
            return None
        y0, x0 = self.offset
        return (
            y0 + int(rows[0]),
            x0 + int(cols[0]),
            y0 + int(rows[-1]) + 1,
            x0 + int(cols[-1]) + 1,
        )

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        return int(np.count_nonzero(self.window))

    @cached_property
    def mask(self) -> np.ndarray:
        """The full ``(H, W)`` bool mask, built on first access (H * W bytes: mind huge images)."""
        return self.crop((0, 0, *self.shape))

    def crop(self, region: tuple[int, int, int, int]) -> np.ndarray:
        """The mask inside ``(y0, x0, y1, x1)`` (clipped to the slice), without the full array."""
        y0, x0 = max(int(region[0]), 0), max(int(region[1]), 0)
        y1, x1 = min(int(region[2]), self.shape[0]), min(int(region[3]), self.shape[1])
        out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
        (wy, wx), (h, w) = self.offset, self.window.shape
        iy0, ix0, iy1, ix1 = max(y0, wy), max(x0, wx), min(y1, wy + h), min(x1, wx + w)
        if iy1 > iy0 and ix1 > ix0:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = self.window[
                iy0 - wy : iy1 - wy, ix0 - wx : ix1 - wx
            ]
        return out

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        georeference: Any = None,
        like: ImageSource | None = None,
    ) -> Path:
        """Write the full-size mask (0 / 255 uint8), block by block from the window.

        ``.tif`` (tiled, zlib, for large slices), ``.png`` or ``.ome.zarr``: see
        :func:`tilesam.io.mask.write_mask`. `like`, the image, gives the file its geometry:
        a ``.tif`` over a georeferenced image is a GeoTIFF on its map grid (as with an
        explicit `georeference`), an ``.ome.zarr`` keeps its pixel spacing and origin.

        Examples
        --------
        >>> import tempfile
        >>> from tilesam.io import open_image
        >>> r = SegmentResult(np.ones((2, 3), bool), offset=(10, 20), shape=(100, 100), score=1)
        >>> path = r.save(Path(tempfile.mkdtemp()) / "mask.tif")
        >>> int((open_image(path).read() == 255).sum())
        6
        """
        if like is not None:
            georeference = like.georeference if georeference is None else georeference
        spacing = None if like is None else like.spacing[-2:]
        origin = None if like is None else like.origin[-2:]
        return write_mask(
            path,
            self.crop,
            shape=self.shape,
            georeference=georeference,
            spacing=spacing,
            origin=origin,
        )


def without_nodata(result: SegmentResult, source: ImageSource) -> SegmentResult:
    """`result` without the pixels of `source` that hold no data (a raster's nodata):
    the decoder sees them as dark pixels and may draw an object over them.

    >>> from tilesam.io import ArraySource
    >>> r = SegmentResult(np.ones((2, 2), bool), offset=(0, 0), shape=(4, 4), score=0.9)
    >>> without_nodata(r, ArraySource(np.zeros((4, 4), np.uint8))) is r  # all pixels valid
    True
    """
    if not source.has_nodata or not result.window.size:
        return result
    (y0, x0), (h, w) = result.offset, result.window.shape
    valid = source.valid(result.z, (slice(y0, y0 + h), slice(x0, x0 + w)))
    if valid is None or valid.all():
        return result
    return replace(result, window=result.window & valid)
