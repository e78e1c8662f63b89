"""Prompts read from a vector file (GeoJSON, GeoPackage, Shapefile): one `PromptFeature`
per feature, placed on a georeferenced raster's pixels as map prompts are
(:mod:`tilesam.io.map_prompts`: points at pixel centres, boxes in pixel edges), and
:func:`merge_features` for the prompt of one object.

Coordinates are reprojected from the file's CRS to the raster's; a file without a CRS is
read only when the caller names one (``crs=``), which also overrides what a file says (a
GeoJSON without a ``"crs"`` member always reads as WGS 84).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference, read_crs
from tilesam.io.map_prompts import (
    Box,
    box_meets_scene,
    check_lonlat,
    few,
    geoms_to_pixels,
    inside_scene,
    outside_scene,
    pixel_box,
    pixel_centres,
    prompt_labels,
    raster_crs,
)

_POINT_TYPES = (0, 4)  # shapely type ids of Point and MultiPoint


@dataclass(frozen=True)
class PromptFeature:
    """One feature of a prompt file in the raster's pixels: positive / negative points, or
    a box (:mod:`tilesam.io.map_prompts` gives the conventions).

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

    raster_crs(geo)  # first: without it no file can be placed on the raster
    meta, fids, wkb, fields = _read_layer(Path(path), layer)
    src = _file_crs(meta, path) if crs is None else read_crs(crs, what="the prompts' CRS")
    geoms = shapely.from_wkb(wkb)
    fids = [int(f) for f in fids]
    bad = [f for f, g in zip(fids, geoms) if g is None or g.is_empty]
    if bad:
        raise TileSAMError(f"Features {few(bad)} of '{path}' have no geometry: remove them.")
    names = [n.lower() for n in meta["fields"]]
    raw = fields[names.index("label")] if "label" in names else np.full(len(fids), None)
    labels = prompt_labels(
        raw, [f"feature {f}" for f in fids], f"The 'label' attribute of '{path}'"
    )
    xy, index = shapely.get_coordinates(geoms, return_index=True)
    check_lonlat(xy[:, 0], xy[:, 1], src, [fids[i] for i in index], f"the features of '{path}'")
    return _records(fids, geoms_to_pixels(geoms, src, geo), labels, shape, geo, src)


def _records(fids, pixels, labels, shape, geo, src) -> list[PromptFeature]:
    """One :class:`PromptFeature` per feature of `pixels` (geometries in pixel ``(col,
    row)``); those outside the scene are named together in one error."""
    import shapely

    records, outside, negative_boxes = [], [], []
    for fid, geom, label in zip(fids, pixels, labels.tolist()):
        if shapely.get_type_id(geom) in _POINT_TYPES:
            cols, rows = shapely.get_coordinates(geom).T
            if not inside_scene(rows, cols, shape).all():
                outside.append(fid)
            points = tuple(map(tuple, pixel_centres(rows, cols).tolist()))
            records.append(PromptFeature((fid,), points, (label,) * len(points)))
            continue
        box = pixel_box(geom)
        if not box_meets_scene(box, shape):
            outside.append(fid)
        if label == 0:
            negative_boxes.append(fid)
        records.append(PromptFeature((fid,), box=box))
    if outside:
        raise outside_scene([f"features {few(outside)}"], geo, shape, src)
    if negative_boxes:
        raise TileSAMError(
            f"Features {few(negative_boxes)} are lines or polygons with label 0, but a box is "
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
