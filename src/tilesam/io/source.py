"""The `ImageSource` interface: lazy, region-wise reads of one (possibly huge) image.

Every reader presents its data in one canonical layout, whatever the file stores:
``axes`` is one of ``"YX"``, ``"YXC"``, ``"ZYX"``, ``"ZYXC"`` (channels last), regions
are tuples of slices over the spatial axes only, and a 2D image is a volume of one
slice (`ImageSource.n_slices`, `ImageSource.read_slice`), so that tiling, encoding and
caching have a single code path for 2D and 3D.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError

#: The canonical layouts a source can report.
AXES = ("YX", "YXC", "ZYX", "ZYXC")

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


class _Layout:
    """Maps a stored ("native") axis order onto the canonical one, lazily.

    `native` uses ``Z``, ``Y``, ``X``, ``C``, ``T`` (time) and ``-`` for a singleton axis to
    drop. Time has no canonical axis of its own: it becomes the slice axis ``Z`` (see
    `map_time`), and ``time`` then says that the slices are time points.
    """

    def __init__(self, native: str, native_shape: tuple[int, ...], what: str) -> None:
        if len(native) != len(native_shape):
            raise TileSAMError(
                f"{what}: axes {native!r} do not match the data's {len(native_shape)} "
                f"dimensions {native_shape}; pass axes= with one letter per dimension."
            )
        mapped = map_time(native, native_shape, what)
        self.time = "T" in native and mapped[native.index("T")] == "Z"
        native = mapped
        for letter in "ZYXC":
            if native.count(letter) > 1:
                raise TileSAMError(f"{what}: axis {letter!r} appears twice in {native!r}.")
        if "Y" not in native or "X" not in native:
            raise TileSAMError(f"{what}: axes {native!r} need both 'Y' and 'X'.")
        bad = set(native) - set("ZYXC-")
        if bad:
            raise TileSAMError(
                f"{what}: unknown axis letter(s) {sorted(bad)} in {native!r}; "
                "use Z, Y, X, C (channels) and T (time)."
            )
        for letter, n in zip(native, native_shape, strict=True):
            if letter == "-" and n != 1:
                raise TileSAMError(f"{what}: cannot drop axis of size {n} in {native_shape}.")
        self.native = native
        kept = [a for a in native if a != "-"]
        self.axes = "".join(a for a in "ZYXC" if a in kept)
        self.shape = tuple(native_shape[native.index(a)] for a in self.axes)
        # Permutation from the kept native order to the canonical order.
        self._perm = tuple(kept.index(a) for a in self.axes)

    def index(self, region: Region, axes: str) -> tuple[Any, ...]:
        """Native index tuple for a canonical spatial region."""
        by_axis = dict(zip(axes.replace("C", ""), region, strict=True))
        return tuple(0 if a == "-" else by_axis.get(a, slice(None)) for a in self.native)

    def to_canonical(self, block: np.ndarray) -> np.ndarray:
        if self._perm != tuple(range(len(self._perm))):
            block = np.transpose(block, self._perm)
        return np.ascontiguousarray(block)


def map_time(native: str, shape: tuple[int, ...], what: str) -> str:
    """Map a time axis ``T`` onto the slice axis, so that walking slices walks time.

    A single time point is dropped; otherwise ``T`` becomes ``Z`` when there is no z
    axis, or only a singleton one (dropped). A series of volumes (``T`` and ``Z`` both longer than
    1) is refused: TileSAM walks one slice axis, so choose a z plane or a time point.

    >>> map_time("TYX", (12, 64, 80), "clip"), map_time("TYXC", (12, 64, 80, 3), "clip")
    ('ZYX', 'ZYXC')
    >>> map_time("TZYX", (12, 1, 64, 80), "clip"), map_time("TZYX", (1, 9, 64, 80), "stack")
    ('Z-YX', '-ZYX')
    """
    if "T" not in native:
        return native
    if native.count("T") > 1:
        raise TileSAMError(f"{what}: axis 'T' appears twice in {native!r}.")
    t, z = native.index("T"), native.find("Z")
    if shape[t] == 1:
        return native.replace("T", "-")
    if z < 0:
        return native.replace("T", "Z")
    if shape[z] == 1:
        return native.replace("Z", "-").replace("T", "Z")
    raise TileSAMError(
        f"{what}: axes {native!r} (shape {tuple(shape)}) hold {shape[t]} time points of "
        f"{shape[z]}-slice volumes; TileSAM walks one slice axis, time or z. Track one z "
        f"plane through time: pass array[:, z] with axes={native.replace('Z', '')!r}; or "
        f"segment one time point as a volume: pass array[t] with "
        f"axes={native.replace('T', '')!r}."
    )


def guess_axes(shape: tuple[int, ...]) -> str:
    """Guess the axes of an array from its shape: a last axis of 2 to 4 is taken for
    channels (no slice is 2 pixels wide), a last axis of 1 for a single channel (``-``:
    dropped).

    >>> guess_axes((512, 512, 3)), guess_axes((40, 512, 512)), guess_axes((9, 64, 64, 4))
    ('YXC', 'ZYX', 'ZYXC')
    >>> guess_axes((512, 512, 2))  # two fluorescence channels
    'YXC'
    >>> guess_axes((512, 640, 1)), guess_axes((9, 64, 64, 1))
    ('YX-', 'ZYX-')
    """
    nd = len(shape)
    if nd == 2:
        return "YX"
    if nd == 3 and shape[-1] == 1:
        return "YX-"
    if nd == 3:
        return "YXC" if shape[-1] in (2, 3, 4) else "ZYX"
    if nd == 4:
        return "ZYX-" if shape[-1] == 1 else "ZYXC"
    raise TileSAMError(
        f"Cannot guess the axes of a {nd}D array of shape {shape}: TileSAM reads YX, YXC, "
        "ZYX or ZYXC images. Select a time point or channel first, or pass axes= "
        "(e.g. axes='CZYX', or axes='TYXC' for a time series: time becomes the slice axis)."
    )


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
        self._layout = _Layout(native_axes, tuple(int(n) for n in array.shape), what)
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


def _fmt_region(region: Region) -> str:
    return "(" + ", ".join(f"{s.start}:{s.stop}" for s in region) + ")"
