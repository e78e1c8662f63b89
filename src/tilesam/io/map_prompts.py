"""Prompts in map coordinates placed on a georeferenced raster's pixels: points and boxes
given as map ``(x, y)``, and the placement, reprojection and checks that prompts read from a
vector file (:mod:`tilesam.io.vectors`) go through as well.

Everything here returns prompts in the pixel conventions of :meth:`tilesam.Session.segment`:

- a point is ``(y, x)`` with whole numbers at pixel *centres* (like ``np.argwhere``; SAM adds
  the half pixel itself), so the map position of the centre of pixel ``(r, c)`` comes back as
  ``(r, c)``; a position in the outer half of an edge pixel is moved to that pixel's centre
  (it is in that pixel, and prompts must lie at ``0 <= y < H``);
- a box is ``(y0, x0, y1, x1)`` in pixel *edges*, end-exclusive: a feature covering rows
  10 to 19 exactly gives ``y0 = 10, y1 = 20``.

Map coordinates are reprojected (GDAL, through rasterio) from their CRS to the raster's, in
GIS order (x = easting or longitude). A raster without a CRS takes no map coordinates.

Examples
--------
>>> geo = GeoReference("EPSG:32633", (0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0))
>>> points, labels = prompt_points_from_map([(402010.25, 5100989.75, 0)], geo)
>>> points.tolist(), labels.tolist()  # the centre of pixel (row 20, col 20)
([[20.0, 20.0]], [0])
>>> prompt_box_from_map((402010.0, 5100980.0, 402020.0, 5100990.0), geo)
(20.0, 20.0, 40.0, 40.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference, crs_name, read_crs

Box = tuple[float, float, float, float]


def prompt_points_from_map(
    xy: Any,
    geo: GeoReference | None,
    *,
    crs: Any = None,
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Map points ``(x, y)`` or ``(x, y, label)`` in `crs` (default: the raster's) as pixel
    points ``(N, 2)`` ``(y, x)`` and labels ``(N,)`` (1 where not given).

    With the raster's `shape` ``(H, W)``, points outside it raise a
    :class:`~tilesam.errors.TileSAMError` naming them and the scene's bounds in `crs`.
    """
    raster = raster_crs(geo)
    try:
        arr = np.asarray(xy, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((0, 0))
    arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or not len(arr):
        raise TileSAMError(
            f"Map points must be (x, y) or (x, y, label) rows of numbers, got {xy!r}."
        )
    labels = np.ones(len(arr), np.int64)
    if arr.shape[1] == 3:
        labels = prompt_labels(
            arr[:, 2], [f"point {i}" for i in range(len(arr))], "Map point labels"
        )
    src = raster if crs is None else read_crs(crs, what="the prompts' CRS")
    names = [f"point {i} {tuple(p[:2])}" for i, p in enumerate(arr.tolist())]
    check_lonlat(arr[:, 0], arr[:, 1], src, names, "the map points")
    rows, cols = map_to_pixels(arr[:, 0], arr[:, 1], src, geo)
    if shape is not None:
        outside = ~inside_scene(rows, cols, shape)
        if outside.any():
            raise outside_scene(np.array(names)[outside].tolist(), geo, shape, src)
    return pixel_centres(rows, cols), labels


def prompt_box_from_map(
    box_xy: Any,
    geo: GeoReference | None,
    *,
    crs: Any = None,
    shape: tuple[int, int] | None = None,
) -> Box:
    """A map box ``(xmin, ymin, xmax, ymax)`` in `crs` (default: the raster's) as a pixel box
    ``(y0, x0, y1, x1)`` around it (its edges densified, so a box from another CRS keeps
    its curved sides inside). A box that misses the scene of `shape` is refused."""
    import shapely

    raster = raster_crs(geo)
    values = np.asarray(box_xy, dtype=np.float64).reshape(-1) if np.size(box_xy) == 4 else None
    if values is None or not np.isfinite(values).all() or not (values[2:] > values[:2]).all():
        raise TileSAMError(
            f"A map box is (xmin, ymin, xmax, ymax) with xmax > xmin and ymax > ymin, "
            f"got {box_xy!r}."
        )
    src = raster if crs is None else read_crs(crs, what="the prompts' CRS")
    check_lonlat(values[[0, 2]], values[[1, 3]], src, [values.tolist()], "the map box")
    polygon = shapely.segmentize(shapely.box(*values), (values[2:] - values[:2]).max() / 64)
    box = pixel_box(geoms_to_pixels(np.array([polygon]), src, geo)[0])
    if shape is not None and not box_meets_scene(box, shape):
        raise outside_scene([f"box {values.tolist()}"], geo, shape, src)
    return box


def raster_crs(geo: GeoReference | None) -> Any:
    """The raster's CRS; an error saying what to do where it has none."""
    if geo is None or not geo.crs:
        raise TileSAMError(
            "This raster has no CRS, so map coordinates cannot be placed on it: give prompts "
            "in pixels instead (points=[(y, x)], box=(y0, x0, y1, x1)), or give the raster a "
            "CRS (e.g. gdal_edit.py -a_srs EPSG:<code>)."
        )
    return read_crs(geo.crs, what="the raster's CRS")


def map_to_pixels(x: np.ndarray, y: np.ndarray, src: Any, geo: GeoReference) -> tuple:
    """Continuous pixel ``(rows, cols)`` (corners whole) of map points in `src`."""
    from rasterio.warp import transform

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dst = read_crs(geo.crs)
    if src != dst and len(x):
        # Points PROJ cannot place come back as inf: then outside the scene.
        x, y = (np.asarray(v, np.float64) for v in transform(src, dst, x, y))
    return geo.pixel_point(x, y)


def geoms_to_pixels(geoms: np.ndarray, src: Any, geo: GeoReference) -> np.ndarray:
    """Shapely geometries in `src` as geometries in pixel ``(col, row)``, corners whole."""
    import shapely

    def to_pixels(xy: np.ndarray) -> np.ndarray:
        rows, cols = map_to_pixels(xy[:, 0], xy[:, 1], src, geo)
        return np.column_stack([cols, rows])

    return shapely.transform(geoms, to_pixels)


def pixel_centres(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixel-centre ``(y, x)`` of corner-frame positions (see the module docstring)."""
    return np.maximum(np.column_stack([rows, cols]) - 0.5, 0.0)


def pixel_box(geom: Any) -> Box:
    """``(y0, x0, y1, x1)`` of a pixel-frame geometry; a line along a row or column (no
    height or width) gets one pixel's worth around it, as a box must not be empty."""
    x0, y0, x1, y1 = geom.bounds
    if y1 - y0 < 1:
        y0, y1 = (y0 + y1) / 2 - 0.5, (y0 + y1) / 2 + 0.5
    if x1 - x0 < 1:
        x0, x1 = (x0 + x1) / 2 - 0.5, (x0 + x1) / 2 + 0.5
    return (float(y0), float(x0), float(y1), float(x1))


def inside_scene(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which pixel positions lie in the scene of `shape` ``(H, W)``."""
    return (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])


def box_meets_scene(box: Box, shape: tuple[int, int]) -> bool:
    """Whether `box` overlaps the scene (one reaching past its edge is clipped later, by
    :meth:`tilesam.Session.segment`, which says so)."""
    y0, x0, y1, x1 = box
    return bool(y1 > 0 and x1 > 0 and y0 < shape[0] and x0 < shape[1])


def prompt_labels(values: np.ndarray, names: list[str], what: str) -> np.ndarray:
    """1 / 0 labels from an attribute column: empty (None, NaN) means 1; anything else but
    0 and 1 (also "0" and "1" written as text) is refused, naming the features."""
    out, bad = np.ones(len(values), np.int64), []
    for i, value in enumerate(values):
        value = value.item() if isinstance(value, np.generic) else value  # shown plainly
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if number in (0.0, 1.0):
            out[i] = int(number)
        else:
            bad.append(f"{names[i]}: {value!r}")
    if bad:
        raise TileSAMError(
            f"{what} must be 1 (positive: on the object) or 0 (negative: not on it), or "
            f"empty for 1; got {few(bad)}."
        )
    return out


def check_lonlat(x: np.ndarray, y: np.ndarray, crs: Any, names: list, what: str) -> None:
    """Refuse coordinates that cannot be longitude / latitude in a geographic CRS: most
    often a file's projected coordinates read in the CRS that a GeoJSON defaults to."""
    if not crs.is_geographic:
        return
    # Longitudes may run 0 to 360; latitudes never pass the poles.
    bad = ~((np.abs(np.asarray(x)) <= 360) & (np.abs(np.asarray(y)) <= 90))
    if bad.any():
        named = list(dict.fromkeys(np.asarray(names, dtype=object)[bad].tolist()))
        raise TileSAMError(
            f"The coordinates of {what} ({few(named)}) are not longitude / latitude, yet they "
            f"are read in "
            f'{_crs_name(crs)} (a GeoJSON file without a "crs" member is read as WGS 84). '
            "Name the CRS they are in with crs= (--prompt-crs), e.g. the raster's."
        )


def outside_scene(names: list[str], geo: GeoReference, shape: tuple[int, int], crs: Any):
    """The error for prompts outside the scene, with its bounds in the prompts' CRS."""
    from rasterio.warp import transform_bounds

    h, w = shape
    corners = [geo.map_point(r, c) for r, c in ((0, 0), (0, w), (h, 0), (h, w))]
    xs, ys = zip(*corners)
    bounds = (min(xs), min(ys), max(xs), max(ys))
    raster = read_crs(geo.crs)
    if crs != raster:
        bounds = transform_bounds(raster, crs, *bounds, densify_pts=21)
    x0, y0, x1, y1 = bounds
    return TileSAMError(
        f"Outside the scene: {', '.join(names)}. The scene spans x {x0:.8g} to {x1:.8g} and "
        f"y {y0:.8g} to {y1:.8g} in {_crs_name(crs)}: move or remove those prompts, or check "
        "the CRS they are given in."
    )


def _crs_name(crs: Any) -> str:
    """ "EPSG:4326", else "the CRS '<its name>'", for messages."""
    name = crs_name(crs)
    return name if name.startswith("EPSG:") else f"the CRS '{name}'"


def few(items: Sequence[Any], limit: int = 10) -> str:
    """The first `limit` of `items` for a message, and how many more there are."""
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
