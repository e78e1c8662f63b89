"""Polygons out: the objects of a label raster as map polygons, and the vector file that
holds them (GeoPackage, GeoJSON or Shapefile), written whole or not at all.

:func:`label_polygons` traces each object id of a label raster (or of a window of it) with
GDAL's polygonize (:func:`rasterio.features.shapes`) and places it on the map with the
raster's affine transform: one (Multi)Polygon per id, holes kept, edges on pixel edges.
:func:`write_polygons` writes them with their attributes through pyogrio (no GeoPandas).

Examples
--------
>>> import numpy as np
>>> from tilesam.io.geo import GeoReference
>>> labels = np.zeros((6, 8), np.uint32)
>>> labels[1:5, 1:5], labels[2:3, 2:3], labels[1:4, 6:8] = 3, 0, 9  # 3 has a hole
>>> geo = GeoReference("EPSG:32633", (0.5, 0.0, 402000.0, 0.0, -0.5, 5101000.0))
>>> found = label_polygons(labels, geo, scores={3: 0.9})
>>> [(f.id, f.area, f.area_m2, f.score, len(f.geometry.interiors)) for f in found]
[(3, 3.75, 3.75, 0.9, 1), (9, 1.5, 1.5, None, 0)]
>>> found[1].geometry.bounds  # columns 6-7, rows 1-3, on the map
(402003.0, 5100998.0, 402004.0, 5100999.5)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.atomic import write_failed
from tilesam.io.geo import GeoReference, read_crs

_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".shp": "ESRI Shapefile"}
# The files a Shapefile may consist of: all of them are the output, and all are replaced.
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml")
_SHAPES_DTYPES = ("uint8", "int8", "uint16", "int16", "int32")  # what GDAL polygonizes as is


@dataclass(frozen=True)
class PolygonFeature:
    """One object as a map feature.

    Attributes
    ----------
    id : int
        The object's id in the label raster.
    geometry : shapely.Polygon or shapely.MultiPolygon
        Its outline in map coordinates (pixel coordinates ``(x = col, y = row)`` for a
        raster without georeference), holes kept.
    area : float
        In CRS units squared (pixels for a raster without georeference).
    area_m2 : float or None
        In square metres: on the ellipsoid for a geographic CRS (longitude / latitude);
        the map's plane area in m² for a projected one (so its scale error is kept, e.g.
        Web Mercator's); None without a CRS.
    score : float or None
        The model's score for the object.
    prompt_id : int or str or None
        The prompt's feature id (see :class:`tilesam.io.vectors.PromptFeature`).
    """

    id: int
    geometry: Any
    area: float
    area_m2: float | None = None
    score: float | None = None
    prompt_id: int | str | None = None


def label_polygons(
    labels: np.ndarray,
    geo: GeoReference | None,
    *,
    offset: tuple[int, int] = (0, 0),
    simplify: float | None = None,
    scores: Mapping[int, float] | None = None,
    prompt_ids: Mapping[int, int | str] | None = None,
) -> list[PolygonFeature]:
    """One :class:`PolygonFeature` per object id of `labels` (0 is background), by id.

    Parameters
    ----------
    labels : numpy.ndarray
        2D integer ids: the whole scene, or a window of it whose top-left pixel is
        `offset` ``(row0, col0)`` in the scene (`geo` is the scene's georeference).
    geo : GeoReference or None
        Places the pixels on the map; None gives polygons in pixel coordinates.
    simplify : float, optional
        Coverage simplification (:func:`shapely.coverage_simplify`, Visvalingam-Whyatt)
        with this tolerance in CRS units, roughly the square root of the area of the
        corners it cuts: touching objects keep one shared border, holes stay, no object
        vanishes. Objects simplified in separate calls may no longer share borders: pass
        touching objects together.
    scores, prompt_ids : mapping from id, optional
        The model's score and the prompt's feature id of each object (None where absent).

    An image without objects gives an empty list (:func:`write_polygons` writes it as an
    empty layer).
    """
    import shapely

    if simplify is not None and not simplify >= 0:
        raise TileSAMError(f"simplify must be a tolerance >= 0 in CRS units, got {simplify!r}.")
    outlines = _pixel_outlines(_check_labels(labels), offset)
    ids = sorted(outlines)
    geoms = np.array([outlines[i] for i in ids], dtype=object)
    if simplify:
        # Vertices at every pixel corner make touching outlines edge-matched, as coverage
        # simplification needs (GDAL leaves out the corners where only a neighbour turns).
        geoms = shapely.segmentize(geoms, 1.0)
    geoms = _to_map(geoms, geo)
    if simplify and len(geoms):
        geoms = _simplified(geoms, simplify)
    areas = shapely.area(geoms)
    areas_m2 = _areas_m2(geoms, areas, geo)
    scores, prompt_ids = scores or {}, prompt_ids or {}
    return [
        PolygonFeature(i, g, float(a), m, _maybe_float(scores.get(i)), prompt_ids.get(i))
        for i, g, a, m in zip(ids, geoms, areas, areas_m2)
    ]


def write_polygons(
    path: str | os.PathLike[str],
    features: Sequence[PolygonFeature],
    crs: Any,
    *,
    overwrite: bool = False,
    layer: str | None = None,
) -> Path:
    """Write `features` to `path`: a GeoPackage (``.gpkg``), GeoJSON (``.geojson``,
    ``.json``) or Shapefile (``.shp``), one MultiPolygon layer (named `layer`, default the
    file's stem) with the attributes ``id``, ``area``, ``area_m2``, ``score`` and
    ``prompt_id`` (integers where every prompt id is one, else text; empty where unknown).

    `crs` is the features' CRS (anything :func:`tilesam.io.geo.read_crs` reads, or None).
    No features give a valid empty layer, so that a run which found nothing says so. The
    file is written in a hidden folder beside `path` and moved into place only when
    complete (all the files of a Shapefile), so a failure leaves nothing behind; an
    existing output is replaced only with `overwrite`.
    """
    path = check_vector_path(path, overwrite=overwrite)
    driver = _DRIVERS[path.suffix.lower()]
    target_crs = None if crs is None or crs == "" else read_crs(crs, what="the polygons' CRS")
    existing = _existing_outputs(path, driver)
    columns = _columns(features)

    def write(target: Path) -> None:
        import pyogrio.raw
        import shapely

        geometry = shapely.to_wkb(np.array([f.geometry for f in features], dtype=object))
        pyogrio.raw.write(
            target, geometry, *columns, layer=layer or path.stem, driver=driver,
            geometry_type="MultiPolygon", promote_to_multi=True,
            crs=None if target_crs is None else target_crs.to_wkt(),
        )  # fmt: skip
        if driver == "GeoJSON" and target_crs is not None:
            _check_geojson_crs(target, target_crs, path)

    _write_atomically(path, write, existing)
    return path


def check_vector_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """`path` if polygons can be written there (a known ending, an existing folder, no
    output there unless `overwrite`), else a :class:`TileSAMError` saying what to do; a
    command checks this before its work.

    >>> check_vector_path("fields.kml")
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: Cannot tell the vector format of 'fields.kml': end its name with .gpkg (GeoPackage), .geojson (GeoJSON) or .shp (Shapefile).
    """  # noqa: E501
    path = Path(path).expanduser()
    driver = _DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise TileSAMError(
            f"Cannot tell the vector format of '{path}': end its name with .gpkg "
            "(GeoPackage), .geojson (GeoJSON) or .shp (Shapefile)."
        )
    if path.is_dir():
        raise TileSAMError(f"'{path}' is a folder: give a file name ending in {path.suffix}.")
    if not path.parent.is_dir():
        raise TileSAMError(f"The folder '{path.parent}' does not exist; create it first.")
    if _existing_outputs(path, driver) and not overwrite:
        raise TileSAMError(
            f"'{path}' exists: pass overwrite=True (--overwrite) to replace it, or choose "
            "another name."
        )
    return path


def _check_labels(labels: Any) -> np.ndarray:
    """`labels` as an array GDAL polygonizes exactly (ids kept)."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise TileSAMError(
            f"Polygons are traced from a 2D integer label image; got {arr.ndim}D {arr.dtype}."
        )
    if arr.dtype.name in _SHAPES_DTYPES:
        return arr
    low, high = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if low < 0:
        raise TileSAMError(f"Label ids are >= 0 (0 is background); this image has {low}.")
    # GDAL takes no uint32 / 64-bit ids: int32 where they fit, else float64 (exact to 2**53).
    return arr.astype(np.int32 if high < 2**31 else np.float64)


def _pixel_outlines(arr: np.ndarray, offset: tuple[int, int]) -> dict[int, Any]:
    """``{id: (Multi)Polygon}`` in scene pixel ``(col, row)``, corners whole."""
    import shapely
    from affine import Affine
    from rasterio.features import shapes
    from shapely.geometry import shape

    parts = defaultdict(list)
    start = Affine.translation(offset[1], offset[0])
    # 4-connected regions never share an edge with another region of the same id, so the
    # union only joins parts touching at a corner, and islands in their own holes.
    for geojson, value in shapes(arr, mask=arr != 0, connectivity=4, transform=start):
        parts[int(value)].append(shape(geojson))
    return {i: p[0] if len(p) == 1 else shapely.union_all(p) for i, p in parts.items()}


def _to_map(geoms: np.ndarray, geo: GeoReference | None) -> np.ndarray:
    import shapely

    if geo is None:
        return geoms
    a, b, c, d, e, f = geo.transform
    return shapely.transform(
        geoms,
        lambda cr: np.column_stack(
            [c + a * cr[:, 0] + b * cr[:, 1], f + d * cr[:, 0] + e * cr[:, 1]]
        ),
    )


def _simplified(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    import shapely

    if hasattr(shapely, "coverage_simplify"):  # shapely >= 2.1 with GEOS >= 3.12
        return np.asarray(shapely.coverage_simplify(geoms, tolerance), dtype=object)
    # Older shapely: each outline on its own, so shared borders may drift apart.
    return shapely.simplify(geoms, tolerance, preserve_topology=True)


def _areas_m2(geoms: np.ndarray, areas: np.ndarray, geo: GeoReference | None) -> list:
    """Square metres per geometry (see :class:`PolygonFeature`), None without a CRS."""
    if geo is None or not geo.crs:
        return [None] * len(geoms)
    crs = read_crs(geo.crs, what="the raster's CRS")
    if not crs.is_geographic:
        metres = crs.linear_units_factor[1]
        return [float(a) * metres**2 for a in areas]
    return [float(a) for a in _ellipsoid_areas(geoms, crs)] if len(geoms) else []


def _ellipsoid_areas(geoms: np.ndarray, crs: Any) -> np.ndarray:
    """Areas on `crs`'s ellipsoid: in a Lambert azimuthal equal-area projection about the
    objects' centre, which keeps every area exact however far from it (no pyproj needed)."""
    import shapely
    from rasterio.warp import transform

    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    shape_keys = ("datum", "ellps", "a", "b", "rf", "f", "R", "towgs84", "pm")
    earth = {k: v for k, v in crs.to_dict().items() if k in shape_keys} or {"ellps": "WGS84"}
    laea = {"proj": "laea", "lat_0": (y0 + y1) / 2, "lon_0": (x0 + x1) / 2, **earth}
    proj = " ".join(f"+{k}={v}" for k, v in laea.items()) + " +units=m +no_defs"
    dst = read_crs(proj)
    # Densified (0.01 degree) so that edges along parallels, curved on that plane, stay so.
    dense = shapely.segmentize(geoms, 0.01)

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transform(crs, dst, xy[:, 0], xy[:, 1]))

    return shapely.area(shapely.transform(dense, project))


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _columns(features: Sequence[PolygonFeature]) -> tuple[list, list, list]:
    """pyogrio's ``field_data, fields, field_mask``: nulls as NaN (floats), masks (ids)."""
    nan = float("nan")
    ids = [f.prompt_id for f in features]
    if all(v is None or isinstance(v, (int, np.integer)) for v in ids):
        prompt = np.array([0 if v is None else int(v) for v in ids], np.int64)
        prompt_mask = np.array([v is None for v in ids], bool)
    else:
        prompt = np.array([None if v is None else str(v) for v in ids], dtype=object)
        prompt_mask = None
    data = [
        np.array([f.id for f in features], np.int64),
        np.array([f.area for f in features], np.float64),
        np.array([nan if f.area_m2 is None else f.area_m2 for f in features], np.float64),
        np.array([nan if f.score is None else f.score for f in features], np.float64),
        prompt,
    ]
    names = ["id", "area", "area_m2", "score", "prompt_id"]
    return data, names, [None, None, None, None, prompt_mask]


def _check_geojson_crs(written: Path, crs: Any, path: Path) -> None:
    """GeoJSON names its CRS only by an EPSG code: refuse one it would silently lose."""
    import pyogrio

    found = pyogrio.read_info(written).get("crs")
    if not found or read_crs(found) != crs:
        raise TileSAMError(
            f"GeoJSON cannot record this CRS (it has no EPSG code), so '{path}' would be read "
            "as longitude / latitude: write a GeoPackage (.gpkg) or a Shapefile (.shp)."
        )


def _existing_outputs(path: Path, driver: str) -> list[Path]:
    if driver != "ESRI Shapefile":
        return [path] if os.path.lexists(path) else []
    parts = [path.with_name(path.stem + ext) for ext in _SHAPEFILE_PARTS]
    return [p for p in parts if os.path.lexists(p)]


def _write_atomically(path: Path, write: Callable[[Path], None], existing: list[Path]) -> None:
    """Run `write` on a file in a hidden folder beside `path`, then move what it made into
    place; on any failure nothing new is left and the old output stays."""
    from pyogrio.errors import DataLayerError, DataSourceError

    staging = path.with_name(f".{uuid.uuid4().hex[:8]}.partial-{path.name}")
    try:
        staging.mkdir()
        write(staging / path.name)
        made = sorted(staging.iterdir())
        if not made:
            raise TileSAMError(f"Could not write '{path}': GDAL wrote nothing.")
        _move_in(made, path.parent, existing)
    except OSError as err:
        raise write_failed(path, err) from err
    except (DataSourceError, DataLayerError) as exc:
        raise TileSAMError(f"Could not write '{path}': {exc}.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_in(made: list[Path], folder: Path, existing: list[Path]) -> None:
    """Move the files `made` into `folder`, replacing `existing` (all or none of them)."""
    if len(made) == 1 and {p.name for p in existing} <= {made[0].name}:
        os.replace(made[0], folder / made[0].name)  # one file: atomic
        return
    # Several files (a Shapefile): set the old ones aside, move the new in, and undo all
    # of it if any step fails.
    aside = [(p, p.with_name(f".{uuid.uuid4().hex[:8]}.replaced-{p.name}")) for p in existing]
    moved: list[Path] = []
    try:
        for old, hidden in aside:
            os.rename(old, hidden)
        for new in made:
            os.replace(new, folder / new.name)
            moved.append(folder / new.name)
    except BaseException:
        for done in moved:
            done.unlink(missing_ok=True)
        for old, hidden in aside:
            if os.path.lexists(hidden):
                os.rename(hidden, old)
        raise
    for _, hidden in aside:
        hidden.unlink(missing_ok=True)
