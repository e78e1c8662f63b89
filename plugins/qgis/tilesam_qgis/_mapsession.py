"""The map tool's link to the core: which raster, model and cache a session opens, and
map clicks turned into one object's prompt.

No widgets here: the dock fills a `MapSettings`, the annotator opens the session and
keeps a `PromptState`. Map coordinates go to the core's own converters
(:func:`tilesam.io.map_prompts.prompt_points_from_map`, ``prompt_box_from_map``), the same
that ``Session.segment(points_xy=, box_xy=, crs=)`` uses, so a click in any canvas CRS
lands on the pixel the command line would give it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsProviderRegistry,
    QgsRasterLayer,
)

from tilesam.errors import TileSAMError
from tilesam.models.weights import DEFAULT_MODEL

if TYPE_CHECKING:
    from tilesam.decode.prompt import Prompt
    from tilesam.segment.result import SegmentResult
    from tilesam.segment.session import Session


@dataclass(frozen=True)
class MapSettings:
    """What a session is opened from: the dock's fields.

    ``model`` is a registry name or a checkpoint file; ``cache=None`` is `default_cache`
    of the raster; ``tile_size=None`` an existing cache's tile size, else the model's
    input size (as on the command line).
    """

    raster: str
    model: str = DEFAULT_MODEL
    cache: str | None = None
    tile_size: int | None = None

    @property
    def cache_path(self) -> Path:
        """The embedding cache this session uses."""
        return Path(self.cache).expanduser() if self.cache else default_cache(self.raster)


def default_cache(raster: str | Path) -> Path:
    """The cache beside `raster`: its name with ``.zarr`` for its suffix (``scene.tif`` →
    ``scene.zarr``, as ``tilesam embed scene.tif --cache scene.zarr`` in the docs), so that
    the CLI, napari and QGIS share one cache for one raster.

    >>> default_cache("/data/scene.tif").as_posix()
    '/data/scene.zarr'
    """
    return Path(raster).with_suffix(".zarr")


def raster_path(layer: QgsRasterLayer) -> str:
    """The file GDAL reads for `layer`; a `TileSAMError` for a layer TileSAM cannot read
    (not GDAL's, no file, no CRS)."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        name = getattr(layer, "name", lambda: "?")()
        raise TileSAMError(f"Layer {name!r} is not a raster file: choose a GDAL raster layer.")
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if not Path(path).is_file():
        raise TileSAMError(
            f"Layer {layer.name()!r} is not read from a file ({layer.source()!r}): TileSAM "
            "segments raster files; save it as a GeoTIFF first (Export > Save As)."
        )
    if not layer.crs().isValid():
        raise TileSAMError(
            f"Layer {layer.name()!r} has no CRS: set one (Layer Properties > Source) so that "
            "map clicks can be placed on its pixels."
        )
    return path


def open_session(settings: MapSettings) -> Session:
    """A `tilesam.Session` on the raster with the model and the cache of `settings`.

    The model goes to the core by name or checkpoint file, as the Processing algorithms
    give it, not loaded: a cache made for its weights then answers clicks with the decoder
    weights it keeps, without loading the model (2.5 GB for ViT-H) or importing torch. The
    core loads the model only to embed a tile (on a new cache: now), through its one cache
    of models per process (`shared_model`, with the arguments Processing's sessions use),
    so the dock and the algorithms still share one loaded model.
    """
    from tilesam import Session

    return Session(
        settings.raster, settings.model, settings.cache_path, tile_size=settings.tile_size
    )


def prompt_crs(canvas_crs: QgsCoordinateReferenceSystem, raster_crs: Any) -> Any:
    """The ``crs=`` the core gets for map coordinates in `canvas_crs`: None where the canvas
    shows the raster's own CRS, else its authority id (``"EPSG:4326"``) or its WKT."""
    if canvas_crs == raster_crs:
        return None
    if canvas_crs.authid().upper().startswith("EPSG:"):
        return canvas_crs.authid()
    return canvas_crs.toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED_GDAL)


@dataclass
class PromptState:
    """One object's prompt in the raster's pixels: points ``(y, x)`` with labels (1
    positive, 0 negative) and an optional box ``(y0, x0, y1, x1)``."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None

    @property
    def has_object(self) -> bool:
        """Whether there is something to segment: a positive point or a box."""
        return self.box is not None or any(self.labels)

    def add_point(self, session: Session, xy: tuple[float, float], label: int, crs: Any) -> None:
        """Add the map point `xy` (in `crs`, None for the raster's) with `label`."""
        from tilesam.io.map_prompts import prompt_points_from_map

        geo, shape = session.source.georeference, session.grid.slice_shape
        pixels, _ = prompt_points_from_map([xy], geo, crs=crs, shape=shape)
        self.points.append(tuple(float(v) for v in pixels[0]))
        self.labels.append(int(label))

    def set_box(self, session: Session, box_xy: tuple[float, ...], crs: Any) -> None:
        """Set the box from the map box ``(xmin, ymin, xmax, ymax)`` in `crs`."""
        from tilesam.io.map_prompts import prompt_box_from_map

        geo, shape = session.source.georeference, session.grid.slice_shape
        box = prompt_box_from_map(box_xy, geo, crs=crs, shape=shape)
        self.box = tuple(float(v) for v in box)

    def prompt(self, session: Session) -> Prompt:
        """The core's checked prompt for this state."""
        points = np.asarray(self.points, float).reshape(-1, 2) if self.points else None
        labels = np.asarray(self.labels, int) if self.points else None
        return session.prompt(points, labels, self.box)


def result_geometry(result: SegmentResult, session: Session) -> tuple[QgsGeometry, float]:
    """The mask of `result` as a (multi)polygon in the raster's CRS, traced on pixel edges
    by the core (:func:`tilesam.io.polygons.label_polygons` on the result's window), and
    its area in CRS units; an empty geometry for an empty mask."""
    import shapely

    from tilesam.io.polygons import label_polygons

    window = np.asarray(result.window, dtype=np.uint8)
    found = label_polygons(window, session.source.georeference, offset=tuple(result.offset))
    if not found:
        return QgsGeometry(), 0.0
    geometry = QgsGeometry()
    geometry.fromWkb(shapely.to_wkb(found[0].geometry))
    geometry.convertToMultiType()
    return geometry, float(found[0].area)
