"""Where a raster lies on the Earth: its CRS and affine transform, and labels written back
as a GeoTIFF on the same grid.

The pixels are read by GDAL (:class:`tilesam.io.raster.RasterSource`), which also reads
this georeference; this module holds what makes them a map. A
:class:`GeoReference` holds the coordinate reference system (as WKT) and GDAL's affine
transform, which maps the *corner* of pixel ``(row, col)`` to map coordinates::

    x = c + a * col + b * row
    y = f + d * col + e * row

`ImageSource.spacing` and `ImageSource.origin` report pixel centres in ``(y, x)`` order, as
for every other reader. napari's y axis points down the screen while a north-up raster's
northing decreases down the image, so the layer geometry (:meth:`GeoReference.layer_geometry`)
uses y = -northing: the map is shown upright with its true pixel size, and the exact CRS and
transform travel in the layer's metadata, from which labels are written back as GeoTIFF.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError

_BLOCK = 256  # GeoTIFF tile edge (a multiple of 16), also the write block


@dataclass(frozen=True)
class GeoReference:
    """Where a raster lies on the Earth: its CRS and pixel-to-map transform.

    Parameters
    ----------
    crs : str
        Coordinate reference system as WKT (empty when the file has none).
    transform : tuple of 6 float
        GDAL / rasterio coefficients ``(a, b, c, d, e, f)`` mapping pixel corners
        ``(col, row)`` to map ``(x, y)`` (see the module docstring).
    nodata : float, optional
        The value marking pixels without data.

    Examples
    --------
    >>> geo = GeoReference("", (30.0, 0.0, 500000.0, 0.0, -30.0, 4100000.0))
    >>> geo.pixel_size, geo.north_up
    ((30.0, 30.0), True)
    >>> geo.map_point(0.5, 0.5)  # the centre of pixel (0, 0), as (x, y)
    (500015.0, 4099985.0)
    >>> geo.pixel_point(500015.0, 4099985.0)  # and back, as (row, col)
    (0.5, 0.5)
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    nodata: float | None = None

    @property
    def north_up(self) -> bool:
        """Whether rows run along the map's y axis and columns along its x axis."""
        a, b, _, d, e, _ = self.transform
        return b == 0 and d == 0 and a > 0 and e < 0

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Size of one pixel in map units, ``(y, x)``."""
        a, b, _, d, e, _ = self.transform
        return (float(np.hypot(b, e)), float(np.hypot(a, d)))

    def map_point(self, row: float, col: float) -> tuple[float, float]:
        """Map ``(x, y)`` of a continuous pixel position (``row + 0.5`` is a pixel centre)."""
        a, b, c, d, e, f = self.transform
        return (c + a * col + b * row, f + d * col + e * row)

    def pixel_point(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Continuous pixel ``(row, col)`` of map ``(x, y)``: the inverse of `map_point`.

        Pixel corners are whole numbers (``row + 0.5`` is a pixel centre); `x` and `y` may
        be NumPy arrays, and so are the results then.
        """
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        if det == 0:
            raise TileSAMError(f"The transform {self.transform} is singular: it maps no pixel.")
        dx, dy = x - c, y - f
        return ((a * dy - d * dx) / det, (e * dx - b * dy) / det)

    def layer_geometry(self) -> dict[str, Any]:
        """napari layer keywords: ``scale`` / ``translate``, or ``affine`` when rotated.

        World ``(y, x)`` is ``(-map y, map x)`` at pixel centres (see the module docstring).
        """
        a, b, c, d, e, f = self.transform
        x0, y0 = self.map_point(0.5, 0.5)
        if self.north_up:
            return {"scale": (-e, a), "translate": (-y0, x0)}
        # world = M @ (row, col) + t, with world y = -(map y).
        return {"affine": [[-e, -d, -y0], [b, a, x0], [0.0, 0.0, 1.0]]}

    def downsampled(self, factor_y: float, factor_x: float) -> GeoReference:
        """The georeference of a pyramid level whose pixels are `factor` times larger."""
        a, b, c, d, e, f = self.transform
        scaled = (a * factor_x, b * factor_y, c, d * factor_x, e * factor_y, f)
        return GeoReference(self.crs, scaled, self.nodata)

    def to_metadata(self) -> dict[str, Any]:
        """Plain types for a layer's metadata (and back with `from_metadata`)."""
        return {"crs": self.crs, "transform": list(self.transform), "nodata": self.nodata}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> GeoReference:
        return cls(meta["crs"], tuple(float(v) for v in meta["transform"]), meta.get("nodata"))


def read_crs(value: Any, *, what: str = "the CRS") -> Any:
    """`value` as a :class:`rasterio.crs.CRS`, comparable with ``==`` whatever its spelling.

    Accepts "EPSG:4326", an EPSG number, WKT, a PROJ string, a rasterio (or pyproj) CRS.
    Anything GDAL cannot read raises one :class:`TileSAMError` naming `what` and the value.
    (``==`` also compares axis order: EPSG:4326 is not "+proj=longlat", whose axes are
    swapped; TileSAM reprojects in GIS order, x = longitude, so either works as a prompt CRS.)

    Examples
    --------
    >>> read_crs("EPSG:32633") == read_crs(read_crs(32633).to_wkt())
    True
    >>> read_crs("+proj=longlat +datum=WGS84 +no_defs").to_epsg()
    4326
    >>> read_crs("EPSG:999999", what="the prompts' CRS")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: Cannot read the prompts' CRS 'EPSG:999999': ... Give it as ...
    """
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    if isinstance(value, CRS):
        return value
    if hasattr(value, "to_wkt"):  # a pyproj CRS, or anything else that speaks WKT
        value = value.to_wkt()
    try:
        if isinstance(value, str) and not value.strip():
            raise CRSError("it is empty")
        return CRS.from_user_input(value)
    except (CRSError, TypeError, ValueError) as exc:
        shown = value if not isinstance(value, str) or len(value) < 80 else value[:77] + "..."
        raise TileSAMError(
            f"Cannot read {what} {shown!r}: {exc}. Give it as 'EPSG:<code>' (e.g. "
            "'EPSG:4326' for longitude / latitude), as WKT or as a PROJ string."
        ) from None


def crs_name(crs: Any) -> str:
    """A CRS's short name: ``EPSG:<code>``, else the name its WKT gives; '' for no CRS.

    >>> crs_name("EPSG:32633"), crs_name("")
    ('EPSG:32633', '')
    """
    if crs is None or (isinstance(crs, str) and not crs.strip()):
        return ""
    crs = read_crs(crs)
    epsg = crs.to_epsg()
    if epsg:
        return f"EPSG:{epsg}"
    found = re.match(r'\s*\w+\["([^"]*)"', crs.to_wkt())
    return found.group(1) if found else "unnamed CRS"


def write_geotiff(
    path: Path,
    labels: np.ndarray | Callable[[tuple[int, int, int, int]], np.ndarray],
    geo: GeoReference,
    *,
    shape: tuple[int, int] | None = None,
    dtype: Any = None,
) -> None:
    """Write a 2D raster (labels or a mask: 0 is background, the file's nodata value) as a
    tiled, compressed GeoTIFF with `geo`'s CRS and transform.

    Parameters
    ----------
    path : Path
        The file to write (callers write to a temporary name and rename it into place).
    labels : numpy.ndarray or callable
        The raster, or a function returning its block ``(y0, x0, y1, x1)``: a raster too
        large for memory is then written block by block (give `shape` and `dtype`).
    geo : GeoReference
        CRS and transform of the grid.
    """
    import rasterio
    from affine import Affine

    if isinstance(labels, np.ndarray):
        if labels.ndim != 2:
            raise TileSAMError(
                f"A GeoTIFF holds a 2D raster; these labels are {labels.ndim}D {labels.shape}."
            )
        shape, dtype, array = labels.shape, labels.dtype, labels
        labels = lambda b: array[b[0] : b[2], b[1] : b[3]]  # noqa: E731
    h, w = shape
    tiled = h >= _BLOCK and w >= _BLOCK  # smaller rasters are written in strips
    profile = {
        "driver": "GTiff",
        "height": h,
        "width": w,
        "count": 1,
        "dtype": np.dtype(dtype).name,
        "crs": geo.crs or None,
        "transform": Affine(*geo.transform),
        "nodata": 0,  # background: GIS viewers show it transparent over the scene
        "compress": "deflate",
        "tiled": tiled,
        "BIGTIFF": "IF_SAFER",  # compressed labels of a huge raster may pass 4 GB
        **({"blockxsize": _BLOCK, "blockysize": _BLOCK} if tiled else {}),
    }
    with rasterio.open(os.fspath(path), "w", **profile) as dataset:
        for y in range(0, h, _BLOCK):
            for x in range(0, w, _BLOCK):
                y1, x1 = min(y + _BLOCK, h), min(x + _BLOCK, w)
                window = rasterio.windows.Window(x, y, x1 - x, y1 - y)
                dataset.write(labels((y, x, y1, x1)), 1, window=window)
