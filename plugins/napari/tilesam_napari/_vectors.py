"""Vector files in napari: labels saved as polygons, and prompt files opened as layers.

Writing (the manifest's ``tilesam.write_polygons``): a labels layer saved as ``.gpkg``,
``.geojson`` or ``.shp`` becomes one polygon per object id, traced by the core
(:func:`tilesam.io.polygons.label_polygons`) and written whole or not at all
(:func:`tilesam.io.polygons.write_polygons`). Labels over a georeferenced image (they carry
its georeference in their metadata, as ``committed_objects`` does) are placed on the map in
its CRS; other labels are written in pixel coordinates (x = column, y = row, pixel edges
on whole numbers) with no CRS, as a GeoPackage or Shapefile (GeoJSON is always longitude /
latitude, so it is refused for them). Small layers are traced whole; larger ones (the
on-disk store of a large image's committed objects) object by object: one pass block by
block finds each id's bounding box, then each object is read and traced in its box alone.

Reading (the manifest's ``tilesam.get_vector_reader``): a ``.gpkg``, ``.geojson`` or
``.shp`` of prompt points and shapes is placed on the georeferenced image open in the
viewer (napari gives a reader only the path; the image is found in
``napari.current_viewer()``, see `tilesam_napari._geo.georeferenced_image`): the core
(:func:`tilesam.io.vectors.read_prompt_features`) reprojects the features from the file's
CRS to the image's pixels. Points become a Points layer (``label`` feature, lime / red),
lines and polygons a Shapes layer of the rectangles of their bounds, both in the image's
placement, named ``prompts`` and ``box_prompts`` when the viewer has no layers of those
names yet, so that TileSAM's *Set up* takes them as its prompt layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference
from tilesam_napari import _geo, _layers

if TYPE_CHECKING:
    from napari.layers import Image

    from tilesam.io.polygons import PolygonFeature
    from tilesam.io.vectors import PromptFeature

#: The vector formats read and written (the core's polygon writer's endings).
SUFFIXES = (".gpkg", ".geojson", ".shp")
#: Layers up to BLOCK x BLOCK pixels are traced whole; larger ones object by object.
BLOCK = 2048


# -- writing -----------------------------------------------------------------------------------
def write_polygons_file(path: str, data: Any, meta: dict) -> list[str]:
    """The manifest's writer: the objects of a labels layer as polygons (see the module
    docstring); an existing file is replaced (napari's save dialog asks first)."""
    from tilesam.io.polygons import check_vector_path, write_polygons

    labels = data[0] if isinstance(data, list) else data  # a multiscale layer's full level
    geo = _labels_georeference(labels, meta)
    target = check_vector_path(path, overwrite=True)
    if geo is None and target.suffix.lower() in (".geojson", ".json"):
        raise TileSAMError(
            f"These labels carry no georeference, so their polygons are in pixel coordinates, "
            f"and GeoJSON is always longitude / latitude: save '{target.name}' as a GeoPackage "
            "(.gpkg) or a Shapefile (.shp), or draw the labels over a georeferenced image."
        )
    features = label_features(labels, geo)
    with warnings.catch_warnings():  # no CRS is meant: pyogrio's warning says only that
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        written = write_polygons(target, features, geo.crs if geo else None, overwrite=True)
    return [str(written)]


def _labels_georeference(labels: Any, meta: dict) -> GeoReference | None:
    """The georeference of the image the labels were drawn over (None: none), checked to
    fit the labels' grid."""
    drawn_over = meta.get("metadata", {}).get("tilesam_geometry", {})
    geo = drawn_over.get("georeference")
    if len(labels.shape) != 2:
        raise TileSAMError(
            f"Polygons are traced from 2D labels (a map); these are {len(labels.shape)}D "
            f"{'x'.join(map(str, labels.shape))}. Save a volume's labels as .nii.gz or "
            ".ome.zarr instead."
        )
    if geo is not None and list(labels.shape) != list(drawn_over.get("shape", labels.shape)):
        raise TileSAMError(
            f"These labels ({'x'.join(map(str, labels.shape))}) do not fit the grid of the "
            f"image they carry the georeference of ('{drawn_over.get('source')}', "
            f"{'x'.join(map(str, drawn_over['shape']))} pixels): save labels drawn over that "
            "image, or remove 'tilesam_geometry' from the layer's metadata to save them in "
            "pixel coordinates."
        )
    return None if geo is None else GeoReference.from_metadata(geo)


def label_features(
    labels: Any, geo: GeoReference | None, *, block: int = BLOCK
) -> list[PolygonFeature]:
    """One polygon per object id of 2D `labels` (a NumPy or zarr array), by id: traced
    whole when it has at most `block` x `block` pixels, else object by object in the
    bounding boxes found by `object_boxes` (never the whole array in memory)."""
    from tilesam.io.polygons import label_polygons

    h, w = labels.shape
    if h * w <= block * block:
        return label_polygons(np.asarray(labels), geo)
    features = []
    for value, (y0, x0, y1, x1) in sorted(object_boxes(labels, block).items()):
        window = np.asarray(labels[y0:y1, x0:x1])
        own = np.where(window == value, window, 0)  # objects overlapping its box left out
        features += label_polygons(own, geo, offset=(y0, x0))
    return features


def object_boxes(labels: Any, block: int = BLOCK) -> dict[int, tuple[int, int, int, int]]:
    """``{id: (y0, x0, y1, x1)}`` (end-exclusive) of every non-zero id of 2D `labels`,
    read `block` x `block` pixels at a time."""
    boxes: dict[int, tuple[int, int, int, int]] = {}
    h, w = labels.shape
    for y in range(0, h, block):
        for x in range(0, w, block):
            part = np.asarray(labels[y : y + block, x : x + block])
            for value, (y0, x0, y1, x1) in _block_boxes(part).items():
                box = (y0 + y, x0 + x, y1 + y, x1 + x)
                old = boxes.get(value, box)
                boxes[value] = (*np.minimum(old[:2], box[:2]), *np.maximum(old[2:], box[2:]))
    return {k: tuple(int(v) for v in box) for k, box in boxes.items()}


def _block_boxes(part: np.ndarray) -> dict[int, tuple[int, int, int, int]]:
    """The bounding boxes of the non-zero ids of one block, vectorised by sorting."""
    yy, xx = np.nonzero(part)
    if not len(yy):
        return {}
    values = part[yy, xx]
    order = np.argsort(values, kind="stable")
    values, yy, xx = values[order], yy[order], xx[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    lows = np.minimum.reduceat(yy, starts), np.minimum.reduceat(xx, starts)
    highs = np.maximum.reduceat(yy, starts) + 1, np.maximum.reduceat(xx, starts) + 1
    return {
        int(v): (int(a), int(b), int(c), int(d))
        for v, a, b, c, d in zip(values[starts], *lows, *highs)
    }


# -- reading -----------------------------------------------------------------------------------
def get_vector_reader(path: str | list[str]) -> Callable[[str | list[str]], list[tuple]] | None:
    """The manifest's vector reader for one ``.gpkg``, ``.geojson`` or ``.shp`` file."""
    if isinstance(path, list):
        return None if len(path) != 1 else get_vector_reader(path[0])
    return read_vectors if str(path).lower().endswith(SUFFIXES) else None


def read_vectors(path: str | list[str]) -> list[tuple]:
    """The features of a vector file as Points / Shapes layers on the georeferenced image
    open in the current viewer (a `TileSAMError` saying what to do when there is none)."""
    import napari

    from tilesam.io.vectors import read_prompt_features

    path = path[0] if isinstance(path, list) else path
    viewer = napari.current_viewer()
    image = _geo.georeferenced_image(viewer)
    shape = tuple(int(n) for n in image.level_shapes[0][-2:])  # full resolution, no RGB
    features = read_prompt_features(path, _geo.georeference(image), shape)
    _geo.show_map_coordinates(viewer)
    taken = {layer.name for layer in viewer.layers}
    return prompt_layers(features, image, Path(path).stem, taken)


def prompt_layers(
    features: list[PromptFeature], image: Image, stem: str, taken: Collection[str] = ()
) -> list[tuple]:
    """napari layer data of `features` (image pixels) over `image`: a Points layer of the
    points and a Shapes layer of the boxes (each only if there are any)."""
    over = {**_layers.geometry(image), "metadata": _layers.over_metadata(image)}
    points = [(p, v) for f in features for p, v in zip(f.points, f.labels)]
    boxes = [f.box for f in features if f.box is not None]
    layers = []
    if points:
        yx = np.array([p for p, _ in points], float).reshape(-1, 2)
        positive = np.array([v for _, v in points]) > 0
        name = _layers.POINTS if _layers.POINTS not in taken else f"{stem} points"
        layers.append((yx, {**_points_style(image, positive), "name": name, **over}, "points"))
    if boxes:
        name = _layers.BOXES if _layers.BOXES not in taken else f"{stem} boxes"
        style = _layers.box_style(image)
        layers.append(([_rectangle(b) for b in boxes], {**style, "name": name, **over}, "shapes"))
    return layers


def _points_style(image: Image, positive: np.ndarray) -> dict[str, Any]:
    """The prompt layer's look and ``label`` feature (as `_layers.add_points` makes it)."""
    return {
        "features": {"label": positive},
        "feature_defaults": {"label": True},
        "face_color": "label",
        "face_color_cycle": {True: _layers.POSITIVE_COLOR, False: _layers.NEGATIVE_COLOR},
        "border_color": "white",
        "size": _layers.point_size(image),
    }


def _rectangle(box: tuple[float, float, float, float]) -> np.ndarray:
    """The corners of a box of pixel edges in napari's data coordinates, where pixel
    centres are whole numbers (so that it covers exactly the pixels the box does)."""
    y0, x0, y1, x1 = (v - 0.5 for v in box)
    return np.array([(y0, x0), (y0, x1), (y1, x1), (y1, x0)], float)
