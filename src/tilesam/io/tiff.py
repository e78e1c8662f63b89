"""TIFF and OME-TIFF (including pyramids and ImageJ hyperstacks), read lazily.

Reads go through tifffile's zarr interface (``series.aszarr(level=...)``, the same store
``tifffile.imread(path, aszarr=True)`` returns) so that a region decodes only the TIFF
tiles or strips it touches. Uncompressed contiguous data is memory-mapped instead:
tifffile presents it as one chunk per page, and a small region would then read a
whole (possibly multi-gigabyte) page.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from tilesam.errors import TileSAMError
from tilesam.io.array_source import LayoutSource
from tilesam.io.source import ReopenedByPath

# What tifffile logs, then reads on with the pages it found, when a file's chain of pages is
# broken: a truncated stack would otherwise open as its first slices.
_BROKEN_PAGES = ("invalid page offset", "invalid offset to page", "failed to reshape")
# tifffile series axis letters -> ours. 'S' (samples, e.g. RGB) and 'C' are channels.
# T (time) is mapped onto the slice axis by the layout (`tilesam.io.axes.map_time`).
_DIRECT = {"Y": "Y", "X": "X", "Z": "Z", "C": "C", "S": "C", "T": "T"}


def _fix_hint(path: Path) -> str:
    return (
        f"Check that '{path}' is a complete TIFF (a truncated copy or a file still being "
        "written cannot be read): copy or export it again."
    )


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _broken_pages_raise(path: Path) -> Iterator[None]:
    """Raise `TileSAMError` if tifffile reports a broken chain of pages inside the block."""
    records = _Records()
    log = logging.getLogger("tifffile")
    log.addHandler(records)
    try:
        yield
    finally:
        log.removeHandler(records)
    broken = [m for m in records.messages if any(s in m for s in _BROKEN_PAGES)]
    if broken:
        raise TileSAMError(
            f"'{path}' is truncated or damaged: not all of its pages can be read "
            f"({broken[0]}). {_fix_hint(path)}"
        )


class TiffSource(ReopenedByPath, LayoutSource):
    """A TIFF / OME-TIFF / ImageJ TIFF file, read region by region.

    Parameters
    ----------
    path : str or Path
        The TIFF file.
    axes : str, optional
        The stored axis order (one letter per dimension of the tifffile series, using
        ``Z``, ``Y``, ``X``, ``C``), to override what the file says, e.g. ``"ZYX"`` for an
        unlabelled page stack. By default axes come from tifffile: ``S``/``C`` become
        channels, one remaining stack axis (pages, ``I``/``Q``/``T``...) becomes ``Z``.
    level : int
        Pyramid level, 0 = full resolution.
    series : int
        Which series (image) of a multi-image file.

    Notes
    -----
    Spacing comes from OME ``PhysicalSize{X,Y,Z}`` or ImageJ calibration (``spacing``
    and the resolution tags), in the file's units; other TIFFs get 1.0. At level k
    spacing is scaled by the level's downsampling factor. A GeoTIFF is read by GDAL
    instead (:class:`tilesam.io.raster.RasterSource`, which `open_image` picks).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "tiles.tif"
    >>> image = np.arange(300 * 400, dtype=np.uint16).reshape(300, 400)
    >>> tifffile.imwrite(path, image, tile=(128, 128))
    >>> with TiffSource(path) as src:
    ...     print(src.axes, src.shape, src.dtype)
    ...     block = src.read((slice(200, 210), slice(390, 400)))  # reads the tiles it touches
    YX (300, 400) uint16
    >>> block.shape, bool((block == image[200:210, 390:400]).all())
    ((10, 10), True)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        axes: str | None = None,
        level: int = 0,
        series: int = 0,
    ) -> None:
        self.path = Path(path)
        self._kwargs = {"axes": axes, "level": level, "series": series}
        self._tif: tifffile.TiffFile | None = None
        try:
            with _broken_pages_raise(self.path):
                self._tif = tifffile.TiffFile(self.path)
                self._open(axes, level, series)
        except TileSAMError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for bad files
            self.close()
            raise TileSAMError(
                f"Cannot read '{self.path}' as a TIFF: {exc}. {_fix_hint(self.path)}"
            ) from exc

    def _open(self, axes: str | None, level: int, series: int) -> None:
        tif = self._tif
        assert tif is not None
        if not 0 <= series < len(tif.series):
            raise TileSAMError(
                f"'{self.path}' has {len(tif.series)} image series; series={series} does not "
                f"exist (valid: 0..{len(tif.series) - 1})."
            )
        ser = tif.series[series]
        self.n_levels = len(ser.levels)
        if not 0 <= level < self.n_levels:
            raise TileSAMError(
                f"'{self.path}' has {self.n_levels} pyramid level(s); level={level} does not "
                f"exist (valid: 0..{self.n_levels - 1})."
            )
        self.level = level
        lvl = ser.levels[level]
        self._check_complete(lvl)
        what = f"TIFF '{self.path}'"
        native = axes.upper() if axes is not None else _map_axes(lvl.axes, lvl.shape, what)
        array = self._open_array(ser, level)
        self._init_layout(array, native, what)
        spacing0 = _physical_spacing(tif, series, self.spatial_ndim)
        self._spacing = _scale_for_level(spacing0, ser.levels[0], lvl, self._layout.native)

    def _open_array(self, ser: tifffile.TiffPageSeries, level: int) -> Any:
        tif = self._tif
        assert tif is not None
        lvl = ser.levels[level]
        if lvl.dataoffset is not None:
            # Contiguous and uncompressed: map the bytes, reads touch only the rows needed.
            dtype = np.dtype(lvl.dtype).newbyteorder(tif.byteorder)
            return np.memmap(self.path, dtype=dtype, mode="r", offset=lvl.dataoffset,
                             shape=lvl.shape)  # fmt: skip
        return zarr.open_array(ser.aszarr(level=level), mode="r")

    def _check_complete(self, lvl: tifffile.TiffPageSeries) -> None:
        # A truncated file usually still parses (the IFDs sit before the pixel data), and
        # tifffile would then fail, or return zeros, only when a missing tile is read.
        # Data is written in order, so checking the first and last page is O(1) and
        # catches truncation, the common failure (interrupted copies and downloads).
        size = self.path.stat().st_size
        pages = lvl.pages
        for page in (pages[0], pages[-1]):
            if page is None:
                continue
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
            if ends and max(ends) > size:
                raise TileSAMError(
                    f"'{self.path}' is truncated: its pixel data needs {max(ends)} bytes but "
                    f"the file has {size}. {_fix_hint(self.path)}"
                )

    def describe(self) -> str:
        return f"TIFF '{self.path}' ({self._axes} {self._shape} {self._dtype}, level {self.level})"

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        self._array = None


def _map_axes(tiff_axes: str, shape: Sequence[int], what: str) -> str:
    """tifffile axes -> ours; singletons are dropped and one stack axis becomes Z."""
    out = []
    for letter, n in zip(tiff_axes, shape, strict=True):
        if letter in _DIRECT and not (letter in "CST" and n == 1):
            out.append(_DIRECT[letter])
        elif n == 1:
            out.append("-")
        else:
            out.append("?")
    if out.count("?") == 1 and "Z" not in out and "T" not in out:
        out[out.index("?")] = "Z"  # a stack of pages (I, Q, T, ...) read as a volume
    if "?" in out or out.count("C") > 1 or out.count("Z") > 1:
        raise TileSAMError(
            f"{what}: cannot map its axes {tiff_axes!r} (shape {tuple(shape)}) onto YX, YXC, "
            "ZYX or ZYXC. Pass axes= with one letter Z, Y, X or C per dimension, or save "
            "one time point / position per file."
        )
    return "".join(out)


def _physical_spacing(tif: tifffile.TiffFile, series: int, nd: int) -> tuple[float, ...] | None:
    """Level-0 spacing ((z,) y, x) from OME or ImageJ metadata, or None."""
    sizes: dict[str, float] = {}
    if tif.is_ome and tif.ome_metadata:
        pixels = [e for e in ET.fromstring(tif.ome_metadata).iter() if e.tag.endswith("Pixels")]
        if series < len(pixels):
            for ax in "XYZ":
                val = pixels[series].get(f"PhysicalSize{ax}")
                if val is not None:
                    sizes[ax] = float(val)
    elif tif.is_imagej and tif.imagej_metadata:
        meta = tif.imagej_metadata
        if "spacing" in meta:
            sizes["Z"] = float(meta["spacing"])
        page = tif.pages.first
        for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
            if tag in page.tags:
                num, den = page.tags[tag].value
                if num > 0 and den > 0:
                    sizes[ax] = den / num  # the tag is pixels per unit
    if not sizes:
        return None
    axes = "ZYX"[3 - nd :]
    return tuple(sizes.get(a, 1.0) if sizes.get(a, 1.0) > 0 else 1.0 for a in axes)


def _scale_for_level(
    spacing0: tuple[float, ...] | None,
    lvl0: tifffile.TiffPageSeries,
    lvl: tifffile.TiffPageSeries,
    native: str,
) -> tuple[float, ...]:
    spatial = [a for a in "ZYX" if a in native]
    if spacing0 is None:
        spacing0 = (1.0,) * len(spatial)
    out = []
    for a, s in zip(spatial, spacing0, strict=True):
        i = native.index(a)
        out.append(s * lvl0.shape[i] / lvl.shape[i])
    return tuple(out)
