"""Prompts in map coordinates: points and boxes given as map ``(x, y)`` or read from a vector
file (GeoJSON, GeoPackage, Shapefile), placed on a georeferenced raster's pixels.

Everything here returns prompts in the pixel conventions of :meth:`tilesam.Session.segment`:

- a point is ``(y, x)`` with whole numbers at pixel *centres* (like ``np.argwhere``; SAM adds
  the half pixel itself), so the map position of the centre of pixel ``(r, c)`` comes back as
  ``(r, c)``; a position in the outer half of an edge pixel is moved to that pixel's centre
  (it is in that pixel, and prompts must lie at ``0 <= y < H``);
- a box is ``(y0, x0, y1, x1)`` in pixel *edges*, end-exclusive: a feature covering rows
  10 to 19 exactly gives ``y0 = 10, y1 = 20``.

Map coordinates are reprojected (GDAL, through rasterio) from their CRS to the raster's, in
GIS order (x = easting or longitude). A raster without a CRS takes no map coordinates; a
file without a CRS is read only when the caller names one (``crs=``), which also overrides
what a file says (a GeoJSON without a ``"crs"`` member always reads as WGS 84).

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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference, crs_name, read_crs

Box = tuple[float, float, float, float]
_POINT_TYPES = (0, 4)  # shapely type ids of Point and MultiPoint


@dataclass(frozen=True)
class PromptFeature:
    """One feature of a prompt file in the raster's pixels: positive / negative points, or
    a box (see the module docstring for the conventions).

    Attributes
    ----------
    fids : tuple of int
        The file's feature ids (GDAL's FID: a GeoPackage's ``fid``, a GeoJSON's ``id`` or
        index, a Shapefile's record number); several after :func:`merge_features`.
    points : tuple of (y, x)
        Point prompts, whole numbers at pixel centres.
    labels : tuple of int
        1 (positive) or 0 (negative), one per point.
    box : (y0, x0, y1, x1) or None
        The bounds of a line or polygon, in pixel edges (end-exclusive).

    Examples
    --------
    >>> a = PromptFeature((3,), points=((5.0, 6.0),), labels=(1,))
    >>> b = PromptFeature((7,), box=(0.0, 0.0, 10.0, 20.0))
    >>> a.prompt_id, merge_features([a, b]).prompt_id
    (3, '3,7')
    >>> merge_features([a, b]).as_prompt()
    {'points': [(5.0, 6.0)], 'labels': [1], 'box': (0.0, 0.0, 10.0, 20.0)}
    """

    fids: tuple[int, ...]
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: Box | None = None

    @property
    def prompt_id(self) -> int | str:
        """The feature id, or the ids joined by commas for a merged prompt (for the
        polygons' ``prompt_id`` attribute)."""
        return self.fids[0] if len(self.fids) == 1 else ",".join(map(str, self.fids))

    def as_prompt(self) -> dict[str, Any]:
        """Keywords for :meth:`tilesam.Session.segment`: ``points``, ``labels``, ``box``."""
        if not self.points:
            return {"points": None, "labels": None, "box": self.box}
        return {"points": list(self.points), "labels": list(self.labels), "box": self.box}


def merge_features(features: Sequence[PromptFeature]) -> PromptFeature:
    """All `features` as the prompt of one object: their points together, and one box
    around all their boxes (SAM takes one box per object).

    >>> merge_features([PromptFeature((1,), box=(0, 0, 5, 5)),
    ...                 PromptFeature((2,), box=(3, 4, 9, 6))]).box
    (0, 0, 9, 6)
    """
    if not features:
        raise TileSAMError("No prompt features to merge: give at least one.")
    boxes = np.array([f.box for f in features if f.box is not None])
    box = None
    if len(boxes):
        box = (*boxes[:, :2].min(axis=0).tolist(), *boxes[:, 2:].max(axis=0).tolist())
    return PromptFeature(
        fids=tuple(i for f in features for i in f.fids),
        points=tuple(p for f in features for p in f.points),
        labels=tuple(v for f in features for v in f.labels),
        box=box,
    )


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
    raster = _raster_crs(geo)
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
        labels = _labels(arr[:, 2], [f"point {i}" for i in range(len(arr))], "Map point labels")
    src = raster if crs is None else read_crs(crs, what="the prompts' CRS")
    names = [f"point {i} {tuple(p[:2])}" for i, p in enumerate(arr.tolist())]
    _check_lonlat(arr[:, 0], arr[:, 1], src, names, "the map points")
    rows, cols = _to_pixels(arr[:, 0], arr[:, 1], src, geo)
    if shape is not None:
        outside = ~_inside(rows, cols, shape)
        if outside.any():
            raise _outside(np.array(names)[outside].tolist(), geo, shape, src)
    return _centres(rows, cols), labels


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

    raster = _raster_crs(geo)
    values = np.asarray(box_xy, dtype=np.float64).reshape(-1) if np.size(box_xy) == 4 else None
    if values is None or not np.isfinite(values).all() or not (values[2:] > values[:2]).all():
        raise TileSAMError(
            f"A map box is (xmin, ymin, xmax, ymax) with xmax > xmin and ymax > ymin, "
            f"got {box_xy!r}."
        )
    src = raster if crs is None else read_crs(crs, what="the prompts' CRS")
    _check_lonlat(values[[0, 2]], values[[1, 3]], src, [values.tolist()], "the map box")
    polygon = shapely.segmentize(shapely.box(*values), (values[2:] - values[:2]).max() / 64)
    box = _pixel_box(_geoms_to_pixels(np.array([polygon]), src, geo)[0])
    if shape is not None and not _box_meets(box, shape):
        raise _outside([f"box {values.tolist()}"], geo, shape, src)
    return box


def read_prompt_features(
    path: str | os.PathLike[str],
    geo: GeoReference | None,
    shape: tuple[int, int],
    *,
    layer: str | int | None = None,
    crs: Any = None,
) -> list[PromptFeature]:
    """The features of a vector file as prompts on the raster of `shape` ``(H, W)``.

    Points and MultiPoints become point prompts, labelled by an optional ``label``
    attribute (1 positive, 0 negative; empty means 1); lines and polygons become boxes of
    their bounds. Coordinates are reprojected from the file's CRS (or `crs`, which
    overrides it) to the raster's. One record per feature, in the file's order; merge them
    with :func:`merge_features` for one object. A file that cannot be read, an unknown or
    ambiguous `layer`, an empty layer, a feature without geometry, a bad label, or features
    outside the scene raise a :class:`~tilesam.errors.TileSAMError` saying what to do.
    """
    import shapely

    _raster_crs(geo)  # first: without it no file can be placed on the raster
    meta, fids, wkb, fields = _read_layer(Path(path), layer)
    src = _file_crs(meta, path) if crs is None else read_crs(crs, what="the prompts' CRS")
    geoms = shapely.from_wkb(wkb)
    fids = [int(f) for f in fids]
    bad = [f for f, g in zip(fids, geoms) if g is None or g.is_empty]
    if bad:
        raise TileSAMError(f"Features {_few(bad)} of '{path}' have no geometry: remove them.")
    names = [n.lower() for n in meta["fields"]]
    raw = fields[names.index("label")] if "label" in names else np.full(len(fids), None)
    labels = _labels(raw, [f"feature {f}" for f in fids], f"The 'label' attribute of '{path}'")
    xy, index = shapely.get_coordinates(geoms, return_index=True)
    _check_lonlat(xy[:, 0], xy[:, 1], src, [fids[i] for i in index], f"the features of '{path}'")
    return _records(fids, _geoms_to_pixels(geoms, src, geo), labels, shape, geo, src)


def _records(fids, pixels, labels, shape, geo, src) -> list[PromptFeature]:
    """One :class:`PromptFeature` per feature of `pixels` (geometries in pixel ``(col,
    row)``); those outside the scene are named together in one error."""
    import shapely

    records, outside, negative_boxes = [], [], []
    for fid, geom, label in zip(fids, pixels, labels.tolist()):
        if shapely.get_type_id(geom) in _POINT_TYPES:
            cols, rows = shapely.get_coordinates(geom).T
            if not _inside(rows, cols, shape).all():
                outside.append(fid)
            points = tuple(map(tuple, _centres(rows, cols).tolist()))
            records.append(PromptFeature((fid,), points, (label,) * len(points)))
            continue
        box = _pixel_box(geom)
        if not _box_meets(box, shape):
            outside.append(fid)
        if label == 0:
            negative_boxes.append(fid)
        records.append(PromptFeature((fid,), box=box))
    if outside:
        raise _outside([f"features {_few(outside)}"], geo, shape, src)
    if negative_boxes:
        raise TileSAMError(
            f"Features {_few(negative_boxes)} are lines or polygons with label 0, but a box is "
            "always positive: give negative prompts as points, or set their label to 1."
        )
    return records


def _read_layer(path: Path, layer: str | int | None) -> tuple:
    """pyogrio's raw read of one layer: ``(meta, fids, wkb, fields)``."""
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    if not path.is_file():
        raise TileSAMError(f"The prompt file '{path}' does not exist: check the path.")
    try:
        layers = pyogrio.list_layers(path)[:, 0].tolist()
        if layer is None and len(layers) > 1:
            raise TileSAMError(
                f"'{path}' holds {len(layers)} layers ({', '.join(layers)}): choose one "
                "with layer= (--prompt-layer)."
            )
        if isinstance(layer, str) and layer not in layers:
            raise TileSAMError(
                f"'{path}' has no layer {layer!r}; its layers are {', '.join(layers)}."
            )
        meta, fids, wkb, fields = pyogrio.raw.read(path, layer=layer, return_fids=True)
    except (DataSourceError, DataLayerError) as exc:
        raise TileSAMError(
            f"Cannot read '{path}' as a vector file: {exc}. Give a GeoJSON, GeoPackage or "
            "Shapefile of prompt points or shapes."
        ) from None
    if not len(fids):
        raise TileSAMError(f"'{path}' holds no features: add prompt points or shapes to it.")
    return meta, fids, wkb, fields


def _file_crs(meta: dict, path: Any) -> Any:
    if not meta.get("crs"):
        raise TileSAMError(
            f"'{path}' does not say which CRS its coordinates are in: name it with crs= "
            "(--prompt-crs), e.g. 'EPSG:4326' for longitude / latitude."
        )
    return read_crs(meta["crs"], what=f"the CRS of '{path}'")


def _raster_crs(geo: GeoReference | None) -> Any:
    if geo is None or not geo.crs:
        raise TileSAMError(
            "This raster has no CRS, so map coordinates cannot be placed on it: give prompts "
            "in pixels instead (points=[(y, x)], box=(y0, x0, y1, x1)), or give the raster a "
            "CRS (e.g. gdal_edit.py -a_srs EPSG:<code>)."
        )
    return read_crs(geo.crs, what="the raster's CRS")


def _to_pixels(x: np.ndarray, y: np.ndarray, src: Any, geo: GeoReference) -> tuple:
    """Continuous pixel ``(rows, cols)`` (corners whole) of map points in `src`."""
    from rasterio.warp import transform

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dst = read_crs(geo.crs)
    if src != dst and len(x):
        # Points PROJ cannot place come back as inf: then outside the scene.
        x, y = (np.asarray(v, np.float64) for v in transform(src, dst, x, y))
    return geo.pixel_point(x, y)


def _geoms_to_pixels(geoms: np.ndarray, src: Any, geo: GeoReference) -> np.ndarray:
    """Shapely geometries in `src` as geometries in pixel ``(col, row)``, corners whole."""
    import shapely

    def to_pixels(xy: np.ndarray) -> np.ndarray:
        rows, cols = _to_pixels(xy[:, 0], xy[:, 1], src, geo)
        return np.column_stack([cols, rows])

    return shapely.transform(geoms, to_pixels)


def _centres(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixel-centre ``(y, x)`` of corner-frame positions (see the module docstring)."""
    return np.maximum(np.column_stack([rows, cols]) - 0.5, 0.0)


def _pixel_box(geom: Any) -> Box:
    """``(y0, x0, y1, x1)`` of a pixel-frame geometry; a line along a row or column (no
    height or width) gets one pixel's worth around it, as a box must not be empty."""
    x0, y0, x1, y1 = geom.bounds
    if y1 - y0 < 1:
        y0, y1 = (y0 + y1) / 2 - 0.5, (y0 + y1) / 2 + 0.5
    if x1 - x0 < 1:
        x0, x1 = (x0 + x1) / 2 - 0.5, (x0 + x1) / 2 + 0.5
    return (float(y0), float(x0), float(y1), float(x1))


def _inside(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])


def _box_meets(box: Box, shape: tuple[int, int]) -> bool:
    """Whether `box` overlaps the scene (one reaching past its edge is clipped later, by
    :meth:`tilesam.Session.segment`, which says so)."""
    y0, x0, y1, x1 = box
    return bool(y1 > 0 and x1 > 0 and y0 < shape[0] and x0 < shape[1])


def _labels(values: np.ndarray, names: list[str], what: str) -> np.ndarray:
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
            f"empty for 1; got {_few(bad)}."
        )
    return out


def _check_lonlat(x: np.ndarray, y: np.ndarray, crs: Any, names: list, what: str) -> None:
    """Refuse coordinates that cannot be longitude / latitude in a geographic CRS: most
    often a file's projected coordinates read in the CRS that a GeoJSON defaults to."""
    if not crs.is_geographic:
        return
    # Longitudes may run 0 to 360; latitudes never pass the poles.
    bad = ~((np.abs(np.asarray(x)) <= 360) & (np.abs(np.asarray(y)) <= 90))
    if bad.any():
        named = list(dict.fromkeys(np.asarray(names, dtype=object)[bad].tolist()))
        raise TileSAMError(
            f"The coordinates of {what} ({_few(named)}) are not longitude / latitude, yet they "
            f"are read in "
            f'{_crs_name(crs)} (a GeoJSON file without a "crs" member is read as WGS 84). '
            "Name the CRS they are in with crs= (--prompt-crs), e.g. the raster's."
        )


def _outside(names: list[str], geo: GeoReference, shape: tuple[int, int], crs: Any):
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


def _few(items: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
