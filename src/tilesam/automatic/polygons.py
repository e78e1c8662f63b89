"""The objects of a result as map polygons: one feature per object, written to a GeoPackage,
GeoJSON or Shapefile.

Objects are windows, so the whole label image is never built: objects whose bounding boxes
touch are gathered into groups, each group's box is painted (:meth:`AutoResult.block`) and
traced (:func:`tilesam.io.polygons.label_polygons`). Touching objects are traced together,
so a simplification keeps their shared border shared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tilesam.automatic.masks import BoxIndex, connected_groups
from tilesam.errors import TileSAMError
from tilesam.io.polygons import PolygonFeature, label_polygons, write_polygons

if TYPE_CHECKING:
    from tilesam.automatic.masks import Instance
    from tilesam.automatic.result import AutoResult

Region = tuple[int, int, int, int]


def result_polygons(result: AutoResult, *, simplify: float | None = None) -> list[PolygonFeature]:
    """One :class:`~tilesam.io.polygons.PolygonFeature` per object of a 2D `result`, by id,
    in map coordinates where the result has a georeference (else in pixels), with the
    model's score and the prompt's feature id (:attr:`AutoResult.prompt_ids`).

    Examples
    --------
    >>> import numpy as np
    >>> from tilesam.automatic.masks import Instance
    >>> from tilesam.automatic.result import AutoResult
    >>> from tilesam.automatic.settings import AutoSettings
    >>> square, bar = np.ones((4, 4), bool), np.ones((1, 6), bool)
    >>> r = AutoResult([Instance(square, (2, 2), score=0.9, id=1),
    ...                 Instance(bar, (6, 0), score=0.5, id=2)], (10, 10), "grid", AutoSettings())
    >>> [(p.id, p.area, p.score) for p in result_polygons(r)]
    [(1, 16.0, 0.9), (2, 6.0, 0.5)]
    """
    if result.is_volume:
        raise TileSAMError(
            "Polygons are drawn from a 2D result (a map); a volume's objects are saved as "
            "labels (.nii.gz, .ome.zarr) instead."
        )
    scores = {o.id: o.score for o in result.objects}
    features: list[PolygonFeature] = []
    for group in _groups(result.objects):
        region = _box_around(group)
        block = np.zeros((region[2] - region[0], region[3] - region[1]), np.uint32)
        for obj in group:  # in the result's order: later objects on top, as in its labels
            block[obj.crop(region)] = obj.id
        features += label_polygons(
            block,
            result.georeference,
            offset=region[:2],
            simplify=simplify,
            scores=scores,
            prompt_ids=result.prompt_ids,
        )
    return sorted(features, key=lambda f: f.id)


def save_polygons(
    result: AutoResult,
    path: str | os.PathLike[str],
    *,
    simplify: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `result`'s objects as polygons (``.gpkg``, ``.geojson``, ``.shp``), in the
    result's CRS, through a temporary file (see :func:`tilesam.io.polygons.write_polygons`)."""
    geo = result.georeference
    features = result_polygons(result, simplify=simplify)
    return write_polygons(path, features, geo.crs if geo else None, overwrite=overwrite)


def _groups(objects: Sequence[Instance]) -> list[list[Instance]]:
    """The objects in groups whose bounding boxes touch or overlap, directly or through
    others (a pixel apart counts: their outlines may share an edge)."""
    index, pairs = BoxIndex(), []
    for i, obj in enumerate(objects):
        grown = _grown(obj.bbox)
        pairs += [(j, i) for j in index.near(grown) if _touch(grown, objects[j].bbox)]
        index.add(i, obj.bbox)
    return [[objects[i] for i in group] for group in connected_groups(len(objects), pairs)]


def _grown(box: Region) -> Region:
    return (box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1)


def _touch(a: Region, b: Region) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _box_around(group: Sequence[Instance]) -> Region:
    boxes = np.array([o.bbox for o in group])
    return (*boxes[:, :2].min(axis=0).tolist(), *boxes[:, 2:].max(axis=0).tolist())
