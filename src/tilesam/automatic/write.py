"""Labels of segment-everything written block by block, atomically, with the source's geometry.

The objects are windows (:class:`tilesam.automatic.masks.Instance`), so any block of the
label image can be painted from the few objects that touch it: a tiled OME-TIFF (or a
GeoTIFF over a georeferenced image) and an OME-Zarr are written one block at a time, and
the whole label image is never in memory. NIfTI, NRRD and MHA have no blocks: those
(volumes of medical size) are written from the whole array by
:func:`tilesam.io.write_labels`, which keeps the direction matrix too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.io.atomic import atomic_output
from tilesam.io.geo import write_geotiff
from tilesam.io.ome_zarr import is_ome_zarr, write_ome_zarr
from tilesam.io.source import ImageSource
from tilesam.io.write import check_labels_path, write_labels

Region = tuple[int, int, int, int]
#: ``block(z, (y0, x0, y1, x1))``: the labels of one block of slice z
BlockFunction = Callable[[int, Region], np.ndarray]
_TIFF_TILE = 256


class LabelView:
    """A label image painted on request: sliced like a numpy array of `shape` (``(H, W)`` or
    ``(Z, H, W)``), one block at a time, from ``block(z, region)``."""

    def __init__(self, shape: tuple[int, ...], dtype: Any, block: BlockFunction) -> None:
        self.shape, self.dtype, self.block = tuple(shape), np.dtype(dtype), block
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple) -> np.ndarray:
        *index, ys, xs = key
        z = int(index[0]) if index else 0
        h, w = self.shape[-2:]
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        return self.block(z, (y0, x0, y1, x1)).astype(self.dtype, copy=False)

    def read(self) -> np.ndarray:
        """The whole label image (for formats without blocks)."""
        slices = [self[z, :, :] for z in range(self.shape[0])] if self.ndim == 3 else [self[:, :]]
        return np.stack(slices) if self.ndim == 3 else slices[0]


def label_dtype(top: int) -> np.dtype:
    """The smallest unsigned type for ids up to `top` (uint32 at most).

    >>> label_dtype(255), label_dtype(256)
    (dtype('uint8'), dtype('uint16'))
    """
    return np.dtype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32)


def write_label_blocks(
    path: str | os.PathLike[str],
    view: LabelView,
    *,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    georeference: Any = None,
    like: ImageSource | None = None,
) -> Path:
    """Write `view` to `path` (``.tif``, ``.ome.zarr``, or a medical format), replacing it
    only once complete; the geometry from `like` where its shape is the view's, else from
    `spacing`, `origin` and `georeference`."""
    path = check_labels_path(path)
    if like is not None and tuple(like.spatial_shape) == view.shape:
        spacing, origin, georeference = like.spacing, like.origin, like.georeference
    else:
        like = None
    suffix = path.suffix.lower()
    if not is_ome_zarr(path) and suffix not in (".tif", ".tiff"):
        return write_labels(path, view.read(), like, spacing=spacing, origin=origin)
    with atomic_output(path) as partial:
        if is_ome_zarr(path):
            write_ome_zarr(partial, view, spacing=spacing, origin=origin)
        elif georeference is not None and view.ndim == 2:
            block = lambda r: view.block(0, r).astype(view.dtype, copy=False)  # noqa: E731
            write_geotiff(partial, block, georeference, shape=view.shape, dtype=view.dtype)
        else:
            _write_tiff(partial, view, spacing)
    return path


def _write_tiff(path: Path, view: LabelView, spacing: Sequence[float] | None) -> None:
    """A tiled, zlib-compressed OME-TIFF with the physical pixel size, tile by tile."""
    import tifffile

    metadata: dict[str, Any] = {"axes": "ZYX"[-view.ndim :]}
    if spacing is not None:
        names = ("PhysicalSizeZ", "PhysicalSizeY", "PhysicalSizeX")[-view.ndim :]
        metadata |= {n: float(v) for n, v in zip(names, spacing[-view.ndim :])}
    tifffile.imwrite(
        path,
        _tiles(view),
        shape=view.shape,
        dtype=view.dtype,
        tile=(_TIFF_TILE, _TIFF_TILE),
        compression="zlib",
        ome=True,
        metadata=metadata,
    )


def _tiles(view: LabelView) -> Iterator[np.ndarray]:
    h, w = view.shape[-2:]
    for z in range(view.shape[0] if view.ndim == 3 else 1):
        for y in range(0, h, _TIFF_TILE):
            for x in range(0, w, _TIFF_TILE):
                # tifffile pads the smaller tiles of the last row and column itself.
                region = (y, x, min(y + _TIFF_TILE, h), min(x + _TIFF_TILE, w))
                yield view.block(z, region).astype(view.dtype, copy=False)
