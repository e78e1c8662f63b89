"""Any raster GDAL opens (GeoTIFF, Cloud-Optimised GeoTIFF, JPEG 2000, VRT mosaics, ERDAS
.img, GeoPackage rasters...), read window by window through rasterio.

GDAL reads only the blocks a window touches and caches them, so a tile costs its own blocks
whatever the scene's size; its overviews are the pyramid levels. Three things a plain image
reader does not do happen here, once, for every layer above:

- **bands**: a scene of many bands is read as the one or three the encoder sees, chosen with
  ``bands=`` (1-based, as GDAL counts); an alpha band is a mask, not a colour;
- **nodata**: which pixels hold no data comes from GDAL's masks (a nodata value, an alpha
  band, an internal mask) or from a value given; :meth:`RasterSource.valid` says, region by
  region, and the statistics, the tiles and every mask leave those pixels out;
- **reprojection**: with ``crs=`` (and ``resolution=``) the scene is read through a GDAL
  warped view in that CRS, computed window by window, never as a full copy.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError, TileSAMWarning
from tilesam.io.geo import GeoReference
from tilesam.io.source import ImageSource, Region, ReopenedByPath

# GDAL's block cache defaults to 5 % of the machine's memory (6 GB on a 128 GB server),
# filled as a scene is read tile by tile and held: a bound keeps embedding's memory flat.
# Read when GDAL first caches a block; a value the user set stays.
os.environ.setdefault("GDAL_CACHEMAX", "256")  # MB


class RasterSource(ReopenedByPath, ImageSource):
    """A raster read by GDAL (through rasterio), window by window.

    Parameters
    ----------
    path : str or Path
        Anything GDAL opens.
    bands : sequence of int, optional
        The bands to read, 1-based as GDAL counts, e.g. ``(4, 3, 2)`` for a false-colour
        Sentinel-2 composite; the encoder sees one (greyscale) or three (red, green, blue).
        Default: every band but an alpha band (which GDAL reads as the mask).
    level : int
        Pyramid level: 0 is the full resolution, ``k`` the file's ``k``-th overview.
    nodata : float, optional
        The value of pixels without data, overriding the file's (and its masks).
    crs : str, optional
        Read the scene reprojected to this CRS (``"EPSG:32633"``, WKT...) through a warped
        view; pixels outside the source are nodata.
    resolution : float, optional
        The pixel size of the reprojected view, in `crs` units (default: GDAL's choice,
        close to the source's).

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from affine import Affine
    >>> path = Path(tempfile.mkdtemp()) / "scene.tif"
    >>> bands = np.arange(4 * 60 * 80, dtype=np.uint16).reshape(4, 60, 80)
    >>> with rasterio.open(path, "w", driver="GTiff", width=80, height=60, count=4,
    ...                    dtype="uint16", crs="EPSG:32633", nodata=0,
    ...                    transform=Affine(10, 0, 500000, 0, -10, 4100000)) as out:
    ...     out.write(bands)
    >>> with RasterSource(path, bands=(4, 3, 2)) as src:
    ...     print(src.axes, src.shape, src.georeference.pixel_size)
    ...     block = src.read((slice(0, 2), slice(0, 3)))
    ...     valid = src.valid(0, (slice(0, 1), slice(0, 3)))
    YXC (60, 80, 3) (10.0, 10.0)
    >>> block[0, 1].tolist() == bands[[3, 2, 1], 0, 1].tolist(), valid.tolist()
    (True, [[True, True, True]])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        bands: Sequence[int] | None = None,
        level: int = 0,
        nodata: float | None = None,
        crs: str | None = None,
        resolution: float | None = None,
    ) -> None:
        self.path = Path(path)
        self._kwargs = {"bands": bands, "level": level, "nodata": nodata, "crs": crs,
                        "resolution": resolution}  # fmt: skip
        self._lock = threading.Lock()  # a GDAL dataset serves one thread at a time
        self._handles: list[Any] = []
        try:
            dataset = self._open(level, crs, resolution)
            self._init_bands(dataset, bands)
        except TileSAMError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - GDAL raises many types for bad files
            self.close()
            raise TileSAMError(f"GDAL cannot read '{self.path}' as a raster: {exc}.") from exc
        self._init_geometry(dataset, nodata)

    # -- opening ----------------------------------------------------------------------------
    def _open(self, level: int, crs: str | None, resolution: float | None) -> Any:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            base = rasterio.open(os.fspath(self.path))
            self._handles.append(base)
            self.n_levels = 1 + len(base.overviews(1))
            if not 0 <= level < self.n_levels:
                raise TileSAMError(
                    f"'{self.path}' has {self.n_levels} pyramid level(s) (the image and its "
                    f"overviews); level={level} does not exist (valid: 0..{self.n_levels - 1})."
                )
            self.level = level
            if crs is not None:
                if level:
                    raise TileSAMError("Reproject (crs=) or read an overview (level=), not both.")
                return self._keep(_warped_view(base, crs, resolution, self.path))
            if resolution is not None:
                raise TileSAMError("resolution= sets the pixel size of a reprojection: add crs=.")
            if level:
                return self._keep(rasterio.open(os.fspath(self.path), overview_level=level - 1))
            return base

    def _keep(self, dataset: Any) -> Any:
        self._handles.append(dataset)
        return dataset

    def _init_bands(self, dataset: Any, bands: Sequence[int] | None) -> None:
        self._dataset = dataset
        self._bands = _chosen_bands(dataset, bands, self.path)
        dtypes = {dataset.dtypes[b - 1] for b in self._bands}
        if len(dtypes) > 1:
            raise TileSAMError(
                f"Bands {list(self._bands)} of '{self.path}' have different types "
                f"{sorted(dtypes)}; choose bands of one type."
            )
        self._dtype = np.dtype(dtypes.pop())
        if self._dtype.kind not in "biuf":
            raise TileSAMError(f"'{self.path}' has {self._dtype} pixels; TileSAM reads numbers.")
        h, w = dataset.height, dataset.width
        self._axes = "YX" if len(self._bands) == 1 else "YXC"
        self._shape = (h, w) if len(self._bands) == 1 else (h, w, len(self._bands))

    def _init_geometry(self, dataset: Any, nodata: float | None) -> None:
        self._nodata = None if nodata is None else float(nodata)
        from rasterio.enums import MaskFlags

        flags = [dataset.mask_flag_enums[b - 1] for b in self._bands]
        self._masked = nodata is not None or any(MaskFlags.all_valid not in f for f in flags)
        file_nodata = dataset.nodata
        value = self._nodata if self._nodata is not None else file_nodata
        self._georeference = None
        self._spacing, self._origin = (1.0, 1.0), (0.0, 0.0)
        if dataset.transform.is_identity:  # GDAL's stand-in for "no transform"
            warnings.warn(
                f"'{self.path.name}' has no map position (no geotransform): TileSAM works in "
                "its pixels, and map-coordinate prompts and polygons in a CRS are not "
                "available for it.",
                TileSAMWarning,
                stacklevel=4,
            )
        else:
            wkt = dataset.crs.to_wkt() if dataset.crs is not None else ""
            geo = GeoReference(wkt, tuple(dataset.transform)[:6], value)
            x0, y0 = geo.map_point(0.5, 0.5)
            self._georeference, self._spacing = geo, geo.pixel_size
            self._origin = (-y0, x0)  # y = -northing, as in the napari layer (tilesam.io.geo)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def georeference(self) -> GeoReference | None:
        """CRS, transform and nodata value of the level read; None without a transform."""
        return self._georeference

    @property
    def bands(self) -> tuple[int, ...]:
        """The bands read, 1-based."""
        return self._bands

    @property
    def has_nodata(self) -> bool:
        return self._masked

    # -- reading ----------------------------------------------------------------------------
    def _read(self, region: Region) -> np.ndarray:
        window = _window(region)
        with self._lock:
            data = self._open_dataset().read(indexes=list(self._bands), window=window)
        return data[0] if len(self._bands) == 1 else np.ascontiguousarray(data.transpose(1, 2, 0))

    def valid(self, z: int, region: Sequence[slice] | None = None) -> np.ndarray | None:
        """Which pixels of a ``(y, x)`` region of slice `z` hold data; None when all do."""
        if not self._masked:
            return None
        y, x = self._normalise_region(region)
        if self._nodata is not None:
            pixels = self._read((y, x)).reshape(y.stop - y.start, x.stop - x.start, -1)
            same = np.isnan(pixels) if np.isnan(self._nodata) else pixels == self._nodata
            return ~same.all(axis=-1)
        with self._lock:
            masks = self._open_dataset().read_masks(list(self._bands), window=_window((y, x)))
        return masks.any(axis=0)

    def _open_dataset(self) -> Any:
        if not self._handles:
            raise TileSAMError(f"{self.describe()} is closed; open the image again to read it.")
        return self._dataset

    def describe(self) -> str:
        return (
            f"raster '{self.path}' ({self._axes} {self._shape} {self._dtype}, bands "
            f"{','.join(map(str, self._bands))}, level {self.level})"
        )

    def close(self) -> None:
        for handle in reversed(self._handles):
            handle.close()
        self._handles = []


def _window(region: Region) -> Any:
    from rasterio.windows import Window

    y, x = region
    return Window(x.start, y.start, x.stop - x.start, y.stop - y.start)


def _chosen_bands(dataset: Any, bands: Sequence[int] | None, path: Path) -> tuple[int, ...]:
    """The 1-based bands to read: `bands` checked, else every band but alpha bands (an
    alpha band is a mask, and GDAL reads it as one)."""
    from rasterio.enums import ColorInterp

    count = dataset.count
    if bands is None:
        return tuple(i for i, c in enumerate(dataset.colorinterp, 1) if c != ColorInterp.alpha)
    chosen = tuple(int(b) for b in bands)
    wrong = [b for b in chosen if not 1 <= b <= count]
    if wrong or not chosen:
        names = ", ".join(
            f"{i} ({d or dataset.colorinterp[i - 1].name})"
            for i, d in enumerate(dataset.descriptions, start=1)
        )
        raise TileSAMError(
            f"bands={list(chosen)} for '{path}', which has {count} band(s): {names}. Give "
            "band numbers 1-based as GDAL counts, e.g. --bands 4,3,2."
        )
    return chosen


def _warped_view(base: Any, crs: str, resolution: float | None, path: Path) -> Any:
    """A GDAL warped view of `base` in `crs`: reprojected window by window, on demand."""
    from rasterio.crs import CRS
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import calculate_default_transform

    if base.crs is None or base.transform.is_identity:
        raise TileSAMError(
            f"'{path}' has no map position (CRS and transform), so it cannot be reprojected "
            "to crs=; leave crs= out to work in pixels."
        )
    try:
        target = CRS.from_user_input(crs)
    except Exception as exc:  # noqa: BLE001 - CRSError and friends
        raise TileSAMError(
            f"crs={crs!r} is not a coordinate reference system GDAL knows ({exc}); give "
            "one like 'EPSG:32633'."
        ) from exc
    if resolution is not None and not float(resolution) > 0:
        raise TileSAMError(f"resolution must be a positive pixel size, got {resolution!r}.")
    res = None if resolution is None else (float(resolution),) * 2
    transform, width, height = calculate_default_transform(
        base.crs, target, base.width, base.height, *base.bounds, resolution=res
    )
    # Without a nodata value, an alpha band marks what lies outside the source.
    alpha = base.nodata is None and all(c.name != "alpha" for c in base.colorinterp)
    return WarpedVRT(
        base, crs=target, transform=transform, width=width, height=height, add_alpha=alpha
    )
