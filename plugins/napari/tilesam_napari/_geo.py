"""Map coordinates of the cursor in napari's status bar, and the georeferenced image that
vector files are placed on.

A georeferenced layer (a GeoTIFF opened by TileSAM, the labels and prompt layers TileSAM
lays over it, the layers of a vector file opened over it) carries the raster's CRS and
transform in ``metadata["tilesam_geometry"]["georeference"]`` (see `tilesam_napari._io`).

napari has no API for adding to the status bar (napari issue 2253): it computes a status
dict for the selected layer in a worker thread and sets ``viewer.status`` in the GUI
thread, whose ``events.status`` the status bar listens to. `show_map_coordinates` connects
one callback to that event: when the status is a layer's (a dict) and that layer is
georeferenced, it sets ``viewer.status`` once more, with the cursor's map position after
napari's ``coordinates`` text (and ignores the status it set itself). Unlike a
``mouse_move`` callback that sets ``viewer.status`` (overwritten by the status thread a
moment later) or an override of a layer's ``get_status`` (a patch on every layer object,
run in napari's thread), it follows every status napari shows, from the mouse or not,
through public API, and touches no layer. (napari calls its own callbacks, the status
bar's among them, before any plugin's, so changing the status in place would not be
drawn.)
"""

from __future__ import annotations

import math
import weakref
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference, crs_name

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Layer

#: The name of the status callback on ``viewer.events.status`` (one per viewer).
STATUS_REF = "tilesam_map_coordinates"
#: What separates the map position from napari's own status text.
SEPARATOR = "  |  "


def georeference(layer: Layer) -> GeoReference | None:
    """The georeference a layer carries in its metadata, or None."""
    meta = getattr(layer, "metadata", None) or {}
    geo = meta.get("tilesam_geometry", {}).get("georeference")
    return None if geo is None else GeoReference.from_metadata(geo)


def show_map_coordinates(viewer: napari.Viewer | None) -> None:
    """Show the cursor's map coordinates in `viewer`'s status bar while a georeferenced
    layer is selected (once per viewer; nothing for None)."""
    if viewer is None or STATUS_REF in viewer.events.status.callback_refs:
        return
    viewer_ref = weakref.ref(viewer)

    def add_map_position(event: Any) -> None:
        viewer = viewer_ref()
        status = getattr(event, "value", None)
        if (
            viewer is None
            or not isinstance(status, dict)
            or SEPARATOR in status.get("coordinates", "")
        ):
            return
        try:
            text = map_status(viewer)
        except (TileSAMError, ValueError, KeyError, TypeError):  # bad metadata: no map text
            return
        if text:  # set again: napari's status bar has drawn napari's status already
            coordinates = f"{status.get('coordinates', '')}{SEPARATOR}{text}"
            viewer.status = {**status, "coordinates": coordinates}

    viewer.events.status.connect(add_map_position, ref=STATUS_REF)


def map_status(viewer: napari.Viewer) -> str | None:
    """The cursor's map position in the selected layer's CRS, e.g. ``"EPSG:32633 x
    402015.250 y 5100989.750"``; None when that layer has no georeference."""
    layer = viewer.layers.selection.active
    geo = None if layer is None else georeference(layer)
    if geo is None:
        return None
    x, y = map_position(layer, geo, viewer.cursor.position)
    digits = _decimals(min(geo.pixel_size))
    name = short_crs_name(geo.crs)
    return f"{name + ' ' if name else ''}x {x:.{digits}f} y {y:.{digits}f}"


def map_position(layer: Layer, geo: GeoReference, world: Any) -> tuple[float, float]:
    """Map ``(x, y)`` of a world position over `layer` (wherever the layer was moved).

    napari's data coordinates put pixel centres on whole numbers; the transform's pixel
    frame puts them half a pixel further (its whole numbers are pixel corners).
    """
    row, col = np.asarray(layer.world_to_data(np.asarray(world)), float)[-2:]
    x, y = geo.map_point(row + 0.5, col + 0.5)
    return float(x), float(y)


@lru_cache(maxsize=32)
def short_crs_name(wkt: str) -> str:
    """The core's short name of a layer's CRS (cached: the status asks on every move)."""
    try:
        return crs_name(wkt) or "map"
    except TileSAMError:
        return "map"


def _decimals(pixel: float) -> int:
    """Decimals that tell apart positions a hundredth of a pixel apart (at least none)."""
    return max(0, math.ceil(-math.log10(pixel)) + 2) if pixel > 0 else 2


def georeferenced_image(viewer: napari.Viewer | None) -> Image:
    """The georeferenced image layer that vector files are placed on: the selected layer
    if it is one, else the first in the layer list; a `TileSAMError` saying what to do
    when the viewer has none."""
    from napari.layers import Image

    images = [] if viewer is None else [
        lyr for lyr in viewer.layers if isinstance(lyr, Image) and georeference(lyr) is not None
    ]  # fmt: skip
    if not images:
        raise TileSAMError(
            "A vector file is placed on a georeferenced image, and none is open: open the "
            "GeoTIFF (or any raster GDAL reads) with TileSAM first, then the vector file."
        )
    active = viewer.layers.selection.active
    return active if active in images else images[0]
