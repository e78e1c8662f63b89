"""Image sources over anything numpy-indexable (numpy, dask, zarr arrays, memory maps):
`LayoutSource`, the base of the readers whose data is such an array, and `ArraySource`,
an array given in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.axes import AXES, AxisLayout, guess_axes
from tilesam.io.source import ImageSource, Region


def check_geometry(
    values: Sequence[float] | None, n: int, default: float, what: str, *, positive: bool
) -> tuple[float, ...]:
    """Validate spacing/origin: `n` finite floats (positive for spacing)."""
    if values is None:
        return (default,) * n
    out = tuple(float(v) for v in values)
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise TileSAMError(f"{what} needs {n} finite numbers (one per spatial axis), got {values}.")
    if positive and not all(v > 0 for v in out):
        raise TileSAMError(f"{what} must be positive, got {values}.")
    return out


class LayoutSource(ImageSource):
    """Base for sources backed by anything numpy-indexable (ndarray, dask, zarr, memmap)."""

    def _init_layout(
        self,
        array: Any,
        native_axes: str,
        what: str,
        *,
        spacing: Sequence[float] | None = None,
        origin: Sequence[float] | None = None,
    ) -> None:
        self._array = array
        self._layout = AxisLayout(native_axes, tuple(int(n) for n in array.shape), what)
        self._axes = self._layout.axes
        self.is_time_series = self._layout.time
        if self._axes not in AXES:
            raise TileSAMError(f"{what}: unsupported axes {self._axes!r}; expected one of {AXES}.")
        self._shape = self._layout.shape
        # Native byte order: a big-endian file must not leak '>u2' into the models.
        self._dtype = np.dtype(array.dtype).newbyteorder("=")
        if self._dtype.kind not in "biuf":
            raise TileSAMError(
                f"{what} has {self._dtype} pixels: TileSAM reads integer, float or boolean "
                "images. Convert it first (e.g. np.abs(image) for complex data)."
            )
        nd = self.spatial_ndim
        self._spacing = check_geometry(spacing, nd, 1.0, f"{what}: spacing", positive=True)
        self._origin = check_geometry(origin, nd, 0.0, f"{what}: origin", positive=False)

    def _read(self, region: Region) -> np.ndarray:
        if self._array is None:
            raise TileSAMError(f"{self.describe()} is closed; open the image again to read it.")
        block = np.asarray(self._array[self._layout.index(region, self._axes)])
        out = self._layout.to_canonical(block).astype(self._dtype, copy=False)
        if not out.flags.owndata:
            # A view into the caller's array or a memory-mapped file: hand out a copy so
            # that writing to the result never changes (or depends on) the source.
            out = out.copy()
        return out


class ArraySource(LayoutSource):
    """An in-memory numpy array, a lazy dask array, or any numpy-indexable array.

    Parameters
    ----------
    array : array-like
        Anything with ``shape``, ``dtype`` and numpy indexing (numpy, dask, zarr arrays).
        Dask arrays stay lazy: only the chunks a region touches are computed.
    axes : str, optional
        The array's own axis order using ``Z``, ``Y``, ``X``, ``C``, e.g. ``"CYX"``; the
        source then reports the canonical order (``"YXC"``). ``T`` (time) becomes the slice
        axis: ``"TYX"`` reads as ``ZYX`` with `is_time_series` set (see `map_time`).
        Guessed by default: 2D is ``YX``; 3D is ``YXC`` if the last axis has 3 or 4
        entries, else ``ZYX``; 4D ``ZYXC``.
    spacing, origin : sequence of float, optional
        Physical pixel size and position per spatial axis.

    Examples
    --------
    >>> import numpy as np
    >>> src = ArraySource(np.zeros((3, 50, 60), np.float32), axes="CYX")
    >>> src.axes, src.shape
    ('YXC', (50, 60, 3))
    """

    def __init__(
        self,
        array: Any,
        *,
        axes: str | None = None,
        spacing: Sequence[float] | None = None,
        origin: Sequence[float] | None = None,
    ) -> None:
        if not all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__")):
            array = np.asarray(array)
        shape = tuple(int(n) for n in array.shape)
        native = axes.upper() if axes is not None else guess_axes(shape)
        self._init_layout(array, native, "array", spacing=spacing, origin=origin)

    def describe(self) -> str:
        return f"array {self._axes} {self._shape} {self._dtype}"
