"""The `ImageSource` interface: lazy, region-wise reads of one (possibly huge) image.

Every reader presents its data in one canonical layout, whatever the file stores:
``axes`` is one of ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"ZYXC"`` (channels last), regions
are tuples of slices over the spatial axes only, and a 2D image is a volume of one
slice (`ImageSource.n_slices`, `ImageSource.read_slice`), so that tiling, encoding and
caching have a single code path for 2D and 3D.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError

#: A region: one slice per spatial axis, ``(z,) y, x``.
Region = tuple[slice, ...]


class ImageSource(ABC):
    """Lazy access to one image: metadata up front, pixels region by region.

    Subclasses set ``_shape``, ``_dtype``, ``_axes`` (canonical), ``_spacing`` and
    ``_origin`` in their constructor and implement `_read` for a normalised region.

    Examples
    --------
    >>> import numpy as np
    >>> from tilesam.io import ArraySource
    >>> src = ArraySource(np.zeros((3, 100, 200), np.uint8))
    >>> src.axes, src.n_slices, src.slice_shape
    ('ZYX', 3, (100, 200))
    >>> src.read((slice(0, 1), slice(10, 20), slice(0, 5))).shape
    (1, 10, 5)
    """

    _shape: tuple[int, ...]
    _dtype: np.dtype
    _axes: str
    _spacing: tuple[float, ...]
    _origin: tuple[float, ...]
    #: Pyramid level this source reads and how many the file has.
    level: int = 0
    n_levels: int = 1
    #: Whether the slice axis Z holds time points (a video, or an image opened with a
    #: ``T`` axis): propagating along it tracks objects through time.
    is_time_series: bool = False

    # -- metadata ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Full shape in canonical axis order (channels last, if any)."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """Pixel data type (native byte order)."""
        return self._dtype

    @property
    def axes(self) -> str:
        """One of ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"ZYXC"``."""
        return self._axes

    @property
    def spacing(self) -> tuple[float, ...]:
        """Physical pixel size per spatial axis ((z,) y, x); 1.0 when the file says nothing."""
        return self._spacing

    @property
    def origin(self) -> tuple[float, ...]:
        """Physical position of pixel (0, 0(, 0)) per spatial axis; 0.0 by default."""
        return self._origin

    @property
    def georeference(self) -> Any | None:
        """CRS and affine transform (`tilesam.io.geo.GeoReference`) of a geo raster, else None."""
        return None

    @property
    def has_nodata(self) -> bool:
        """Whether some pixels may hold no data (a raster's nodata value or mask)."""
        return False

    @property
    def spatial_ndim(self) -> int:
        """2 for ``YX``/``YXC``, 3 for ``ZYX``/``ZYXC``."""
        return 3 if self._axes.startswith("Z") else 2

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape over the spatial axes only."""
        return self._shape[: self.spatial_ndim]

    @property
    def n_channels(self) -> int:
        """Number of channels; 1 for images without a channel axis."""
        return self._shape[-1] if self._axes.endswith("C") else 1

    @property
    def n_slices(self) -> int:
        """Number of z slices; 1 for a 2D image (a 2D image is a volume of one slice)."""
        return self._shape[0] if self.spatial_ndim == 3 else 1

    @property
    def slice_shape(self) -> tuple[int, int]:
        """``(H, W)`` of one slice."""
        h, w = self.spatial_shape[-2:]
        return (h, w)

    # -- reading ----------------------------------------------------------------------------
    def read(self, region: Sequence[slice] | None = None) -> np.ndarray:
        """Read a region, loading only the data it needs.

        Parameters
        ----------
        region : tuple of slice, optional
            One slice per spatial axis, in ``(z,) y, x`` order (step 1). Out-of-range
            bounds are clipped like numpy's. ``None`` reads the whole image.

        Returns
        -------
        numpy.ndarray
            Shape ``(nz,) ny, nx(, C)``: all channels are always returned.
        """
        norm = self._normalise_region(region)
        try:
            return self._read(norm)
        except TileSAMError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure becomes a user error
            raise TileSAMError(
                f"Could not read region {_fmt_region(norm)} of {self.describe()}: {exc}. "
                "The file may be truncated, corrupt or still being written; "
                "copy or export it again."
            ) from exc

    def read_slice(self, z: int, region: Sequence[slice] | None = None) -> np.ndarray:
        """Read a ``(y, x)`` region of slice `z` as ``(ny, nx(, C))``; 2D images have ``z = 0``.

        Examples
        --------
        >>> import numpy as np
        >>> from tilesam.io import ArraySource
        >>> ArraySource(np.zeros((64, 64), np.uint8)).read_slice(0, (slice(0, 8),) * 2).shape
        (8, 8)
        """
        if not 0 <= z < self.n_slices:
            raise TileSAMError(
                f"Slice {z} is outside {self.describe()}, which has {self.n_slices} slice(s) "
                f"(valid: 0..{self.n_slices - 1})."
            )
        yx = tuple(region) if region is not None else (slice(None), slice(None))
        if len(yx) != 2:
            raise TileSAMError(f"read_slice takes a (y, x) region of 2 slices, got {len(yx)}.")
        if self.spatial_ndim == 2:
            return self.read(yx)
        return self.read((slice(z, z + 1), *yx))[0]

    def valid(self, z: int, region: Sequence[slice] | None = None) -> np.ndarray | None:
        """Which pixels of a ``(y, x)`` region of slice `z` hold data; None when all do
        (every source but a raster with nodata)."""
        return None

    @abstractmethod
    def _read(self, region: Region) -> np.ndarray:
        """Read a normalised region (one in-range slice per spatial axis)."""

    def describe(self) -> str:
        """A short human description used in error messages."""
        return f"{type(self).__name__} {self._axes} {self._shape} {self._dtype}"

    def close(self) -> None:  # noqa: B027 - optional hook, in-memory sources hold nothing
        """Release file handles (no-op for in-memory sources)."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{self.describe()} spacing={self._spacing} level={self.level}/{self.n_levels}>"

    def _normalise_region(self, region: Sequence[slice] | None) -> Region:
        nd = self.spatial_ndim
        if region is None:
            region = (slice(None),) * nd
        region = tuple(region)
        if len(region) != nd or not all(isinstance(s, slice) for s in region):
            raise TileSAMError(
                f"A region for a {self._axes} image is a tuple of {nd} slices "
                f"({'z, ' if nd == 3 else ''}y, x), got {region!r}."
            )
        out = []
        for s, n in zip(region, self.spatial_shape, strict=True):
            start, stop, step = s.indices(n)
            if step != 1:
                raise TileSAMError(f"Region slices must have step 1, got {s!r}.")
            out.append(slice(start, max(start, stop)))
        return tuple(out)


class ReopenedByPath:
    """A file source that travels by its path and the options it was opened with (to dask
    workers, to other processes): each process reopens the file itself instead of
    receiving open file handles. Subclasses set ``path`` and ``_kwargs``."""

    path: Any
    _kwargs: dict[str, Any]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": Path(self.path).absolute(), "kwargs": self._kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], **state["kwargs"])  # type: ignore[misc]


def _fmt_region(region: Region) -> str:
    return "(" + ", ".join(f"{s.start}:{s.stop}" for s in region) + ")"
