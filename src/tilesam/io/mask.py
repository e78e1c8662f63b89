"""`write_mask`: one object's full-size mask (0 / 255, uint8) to disk, atomically.

A mask of a 20 000 x 20 000 slice is 400 MB in memory but a few hundred pixels wide on it,
so the writers here take the mask as a function returning any block ``(y0, x0, y1, x1)``
of it (e.g. `tilesam.segment.result.SegmentResult.crop`) and write large masks block by
block: a tiled TIFF, a GeoTIFF, or an OME-Zarr. PNG, which has no tiles, is written whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.atomic import atomic_output
from tilesam.io.geo import GeoReference, write_geotiff
from tilesam.io.ome_zarr import OME_ZARR_SUFFIX, Region, is_ome_zarr, write_ome_zarr
from tilesam.io.write import check_target

MASK_SUFFIXES = (".tif", ".tiff", ".png", OME_ZARR_SUFFIX)
# Full-size masks above this many pixels are written as tiled TIFFs, tile by tile.
_TILED_ABOVE = 2048 * 2048
_TIFF_TILE = 256

Block = Callable[[Region], np.ndarray]


def check_mask_path(path: str | os.PathLike[str]) -> Path:
    """`path` if a mask can be written there (known ending, existing folder), else raise.

    >>> check_mask_path("mask.jpg")
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: Unsupported mask file '.jpg': use .tif or .png, or .ome.zarr.
    """
    path = Path(path).expanduser()
    if _suffix(path) not in MASK_SUFFIXES:
        raise TileSAMError(
            f"Unsupported mask file {path.suffix!r}: use .tif or .png, or {OME_ZARR_SUFFIX}."
        )
    if not path.parent.is_dir():
        raise TileSAMError(
            f"Could not write the mask to '{path}': the folder '{path.parent}' does not "
            "exist; create it first."
        )
    check_target(path, "mask")
    return path


def write_mask(
    path: str | os.PathLike[str],
    mask: np.ndarray | Block,
    *,
    shape: tuple[int, int] | None = None,
    georeference: GeoReference | None = None,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
) -> Path:
    """Write a 2D mask (nonzero = object) as 0 / 255 uint8, replacing `path` when complete.

    Parameters
    ----------
    path : str or Path
        ``.tif`` (zlib; tiled and written tile by tile above 2048 x 2048 pixels; a GeoTIFF
        with a `georeference`), ``.png``, or ``.ome.zarr`` (with `spacing` and `origin`).
    mask : numpy.ndarray or callable
        The ``(H, W)`` mask, or a function returning its block ``(y0, x0, y1, x1)``; then
        give `shape`, ``(H, W)``.
    georeference : GeoReference, optional
        A ``.tif`` is then a GeoTIFF on this map grid.
    spacing, origin : sequence of float, optional
        ``(y, x)`` pixel size and position of the first pixel, kept by ``.ome.zarr``.

    Examples
    --------
    >>> import tempfile
    >>> from tilesam.io import open_image
    >>> mask = np.zeros((60, 80), bool)
    >>> mask[10:20, 30:50] = True
    >>> path = Path(tempfile.mkdtemp()) / "cell.ome.zarr"
    >>> back = open_image(write_mask(path, mask, spacing=(0.5, 0.5), origin=(100.0, 8.0)))
    >>> back.spacing, back.origin, np.unique(back.read()).tolist()
    ((0.5, 0.5), (100.0, 8.0), [0, 255])
    """
    path = check_mask_path(path)
    if not callable(mask):
        array, shape = np.asarray(mask), np.shape(mask)
        mask = lambda r: array[r[0] : r[2], r[1] : r[3]]  # noqa: E731
    if shape is None or len(shape) != 2:
        raise TileSAMError(
            f"A mask is a 2D (H, W) array, or a block function with its shape=; got {shape}."
        )
    source: Block = mask

    def block(region: Region) -> np.ndarray:
        return (source(region) != 0).astype(np.uint8) * np.uint8(255)

    with atomic_output(path) as partial:  # a disk's error: one TileSAMError, old file kept
        _write(partial, _suffix(path), block, shape, georeference, spacing, origin)
    return path


def _write(
    partial: Path,
    suffix: str,
    block: Block,
    shape: tuple[int, int],
    georeference: GeoReference | None,
    spacing: Sequence[float] | None,
    origin: Sequence[float] | None,
) -> None:
    if suffix == ".png":
        import imageio.v3 as iio

        iio.imwrite(partial, block((0, 0, *shape)))
    elif suffix == OME_ZARR_SUFFIX:
        write_ome_zarr(partial, block, shape=shape, dtype=np.uint8, spacing=spacing, origin=origin)
    elif georeference is not None:
        write_geotiff(partial, block, georeference, shape=shape, dtype=np.uint8)
    else:
        _write_tiff(partial, block, shape)


def _write_tiff(path: Path, block: Block, shape: tuple[int, int]) -> None:
    import tifffile

    height, width = shape
    if height * width <= _TILED_ABOVE:
        tifffile.imwrite(path, block((0, 0, height, width)), compression="zlib")
        return

    def tiles() -> Iterator[np.ndarray]:
        for y in range(0, height, _TIFF_TILE):
            for x in range(0, width, _TIFF_TILE):
                # tifffile pads the smaller tiles of the last row and column itself.
                yield block((y, x, min(y + _TIFF_TILE, height), min(x + _TIFF_TILE, width)))

    tifffile.imwrite(
        path,
        tiles(),
        shape=(height, width),
        dtype=np.uint8,
        tile=(_TIFF_TILE, _TIFF_TILE),
        compression="zlib",
    )


def _suffix(path: Path) -> str:
    return OME_ZARR_SUFFIX if is_ome_zarr(path) else path.suffix.lower()
