"""Segmentation in and out: checked prompts, results that stay small for huge images,
and one-call `segment_image`.

A mask of a 20 000 x 20 000 slice is 400 MB as a full boolean array, but an object is
usually a few hundred pixels wide. :class:`SegmentResult` therefore keeps only the
*window*: the mask inside its bounding box, and where that box lies. The full-size
array is built only when ``.mask`` is asked for; ``.save`` writes a full-size TIFF tile
by tile from the window.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError

Box = tuple[float, float, float, float]
# Full-size masks above this many pixels are written as tiled TIFFs, tile by tile.
_TILED_ABOVE = 2048 * 2048
_TIFF_TILE = 256


@dataclass(frozen=True)
class Prompt:
    """A user's prompt in image coordinates, checked against the slice shape.

    Examples
    --------
    >>> p = Prompt.make([(5, 6)], None, None, (100, 100))
    >>> p.points.tolist(), p.labels.tolist(), p.box
    ([[5.0, 6.0]], [1], None)
    """

    points: np.ndarray  # (N, 2) float (y, x)
    labels: np.ndarray  # (N,) int, 1 positive, 0 negative
    box: Box | None

    @classmethod
    def make(cls, points, labels, box, shape: tuple[int, int]) -> Prompt:
        """Validate user input; anything wrong raises :class:`TileSAMError`."""
        yx = _points(points, shape)
        lab = _labels(labels, len(yx))
        bx = _box(box, shape) if box is not None else None
        if bx is None and not (lab == 1).any():
            raise TileSAMError(
                "The prompt needs a positive point or a box: negative points alone do not "
                "say which object to segment."
            )
        return cls(yx, lab, bx)


def _points(points, shape: tuple[int, int]) -> np.ndarray:
    if points is None or len(points) == 0:
        return np.zeros((0, 2))
    arr = np.asarray(points, dtype=np.float64)
    if arr.shape[-1] != 2:
        raise TileSAMError(f"points must be (y, x) pairs, got an array of shape {arr.shape}.")
    yx = arr.reshape(-1, 2)
    inside = np.isfinite(yx).all(1) & (yx >= 0).all(1) & (yx < np.array(shape)).all(1)
    if not inside.all():
        bad = tuple(yx[np.argmin(inside)].tolist())
        raise TileSAMError(
            f"Point {bad} lies outside the image slice of shape {shape}: points are (y, x) "
            "pixel positions with 0 <= y < H and 0 <= x < W."
        )
    return yx


def _labels(labels, n: int) -> np.ndarray:
    if labels is None:
        return np.ones(n, dtype=np.int64)
    lab = np.asarray(labels).reshape(-1)
    if lab.shape != (n,) or not np.isin(lab, (0, 1)).all():
        raise TileSAMError(
            f"labels must hold one 1 (positive) or 0 (negative) per point: got {lab.tolist()} "
            f"for {n} points."
        )
    return lab.astype(np.int64)


def _box(box, shape: tuple[int, int]) -> Box:
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.isfinite(values).all():
        raise TileSAMError(f"box must be 4 numbers (y0, x0, y1, x1), got {box!r}.")
    y0, x0, y1, x1 = (float(v) for v in values)
    if not (y1 > y0 and x1 > x0):
        raise TileSAMError(f"box {values.tolist()} is empty: it needs y1 > y0 and x1 > x0.")
    if y0 < 0 or x0 < 0 or y1 > shape[0] or x1 > shape[1]:
        raise TileSAMError(
            f"box {values.tolist()} reaches outside the image slice of shape {shape}; boxes are "
            "(y0, x0, y1, x1) with 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W."
        )
    return (y0, x0, y1, x1)


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

    def save(self, path: str | os.PathLike[str], *, georeference: Any = None) -> Path:
        """Write the full-size mask (0 / 255 uint8) as ``.tif`` (tiled, zlib, for large
        slices: written tile by tile) or ``.png``.

        With a `georeference` (`tilesam.io.geo.GeoReference`, e.g. the source's) a ``.tif``
        is a GeoTIFF on the source's map grid.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".tif", ".tiff", ".png"):
            raise TileSAMError(f"Unsupported mask file {path.suffix!r}: use .tif or .png.")
        try:
            self._write(path, suffix, georeference)
        except OSError as err:  # a missing folder, no permission, a full disk
            raise TileSAMError(
                f"Could not write the mask to '{path}': {err.strerror or err}. Choose a folder "
                "that exists and that you can write, on a disk with free space."
            ) from err
        return path

    def _write(self, path: Path, suffix: str, georeference: Any) -> None:
        if suffix == ".png":
            import imageio.v3 as iio

            iio.imwrite(path, self.mask.astype(np.uint8) * 255)
        elif georeference is not None:
            from tilesam.io.geo import write_geotiff

            block = lambda box: self.crop(box).astype(np.uint8) * 255  # noqa: E731
            write_geotiff(path, block, georeference, shape=self.shape, dtype=np.uint8)
        else:
            _write_tiff(path, self)


def _write_tiff(path: Path, result: SegmentResult) -> None:
    import tifffile

    height, width = result.shape
    if height * width <= _TILED_ABOVE:
        tifffile.imwrite(path, result.mask.astype(np.uint8) * 255, compression="zlib")
        return

    def tiles() -> Iterator[np.ndarray]:
        for y in range(0, height, _TIFF_TILE):
            for x in range(0, width, _TIFF_TILE):
                crop = result.crop((y, x, y + _TIFF_TILE, x + _TIFF_TILE))
                yield crop.astype(np.uint8) * 255

    tifffile.imwrite(
        path,
        tiles(),
        shape=(height, width),
        dtype=np.uint8,
        tile=(_TIFF_TILE, _TIFF_TILE),
        compression="zlib",
    )
