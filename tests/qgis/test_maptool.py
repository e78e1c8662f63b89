"""The interactive map tool, driven by synthetic canvas events on a real `QgsMapCanvas`
(offscreen): click / box → live mask → Commit into a GeoPackage → Undo; embedding in a
`QgsTask`; a canvas in another CRS than the raster's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qgis.core")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent  # noqa: E402
from qgis.PyQt.QtCore import QEvent, QPoint, Qt  # noqa: E402

#: The scene: 512 x 512 pixels of 2 m in UTM 33N, a bright 40-pixel square at (200, 300).
ORIGIN, PIXEL, SQUARE = (400000.0, 5100000.0), 2.0, (200, 300, 240, 340)
UTM, LONLAT = "EPSG:32633", "EPSG:4326"


@pytest.fixture(scope="module")
def scene(qgis_app, tmp_path_factory) -> Path:
    """A UTM GeoTIFF with a bright square on a noisy dark ground."""
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path_factory.mktemp("maptool") / "scene.tif"
    image = np.random.default_rng(0).integers(30, 60, (3, 512, 512)).astype(np.uint8)
    y0, x0, y1, x1 = SQUARE
    image[:, y0:y1, x0:x1] = 220
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 3, "dtype": "uint8"}
    transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    with rasterio.open(path, "w", crs=UTM, transform=transform, **profile) as out:
        out.write(image)
    return path


def map_xy(row: float, col: float) -> tuple[float, float]:
    """UTM coordinates of a pixel position."""
    return ORIGIN[0] + col * PIXEL, ORIGIN[1] - row * PIXEL


def square_geometry(crs: str = UTM) -> QgsGeometry:
    """The square's true footprint on the map, in `crs`."""
    y0, x0, y1, x1 = SQUARE
    (xa, ya), (xb, yb) = map_xy(y1, x0), map_xy(y0, x1)
    geometry = QgsGeometry.fromRect(QgsRectangle(xa, ya, xb, yb))
    if crs != UTM:
        geometry.densifyByCount(16)
        geometry.transform(_transform(UTM, crs))
    return geometry


def _transform(src: str, dst: str) -> QgsCoordinateTransform:
    return QgsCoordinateTransform(
        QgsCoordinateReferenceSystem(src), QgsCoordinateReferenceSystem(dst), QgsProject.instance()
    )


def iou(a: QgsGeometry, b: QgsGeometry) -> float:
    return a.intersection(b).area() / a.combine(b).area()


def wait(condition, seconds: float = 120.0) -> None:
    """Process events until `condition()` holds."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        QgsApplication.processEvents()
        time.sleep(0.01)


@pytest.fixture(scope="module")
def cache(scene, tmp_path_factory) -> Path:
    """The scene's cache, filled by the dock's *Compute embeddings* (a QgsTask)."""
    path = tmp_path_factory.mktemp("cache") / "scene.zarr"
    with open_dock(scene, path) as dock:
        task = dock.compute_embeddings()
        assert task is not None and dock.embed_button.text() == "Cancel embedding"
        wait(lambda: dock.task is None)
        session = dock.annotator.session
        n = session.n_tiles
        assert session.missing_tiles() == [] and session.grid.tile_size == 256
        assert dock.progress.value() == 100 and f"{n}/{n} tiles" in dock.status.text()
    return path


class open_dock:  # noqa: N801 - used like a function
    """A canvas showing `scene` (in `crs`) and a TileSAM dock with the map tool on it."""

    def __init__(self, scene: Path, cache: Path | None, crs: str = UTM) -> None:
        from tilesam_qgis.dock import TileSAMDock

        self.layer = QgsRasterLayer(str(scene), "scene")
        assert self.layer.isValid()
        QgsProject.instance().addMapLayer(self.layer)
        canvas = self.canvas = QgsMapCanvas()
        canvas.resize(512, 512)
        canvas.show()
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem(crs))
        canvas.setLayers([self.layer])
        extent = _transform(UTM, crs).transformBoundingBox(self.layer.extent())
        canvas.setExtent(extent)
        QgsApplication.processEvents()
        self.dock = TileSAMDock(canvas)
        self.dock.layer_box.setLayer(self.layer)
        self.dock.tile_box.setValue(256)
        if cache is not None:
            self.dock.cache_box.setFilePath(str(cache))
        self.dock.activate_tool(True)
        assert canvas.mapTool() is self.dock.tool

    def __enter__(self):
        return self.dock

    def __exit__(self, *exc) -> None:
        self.dock.unload()
        QgsProject.instance().removeAllMapLayers()
        self.canvas.hide()
        self.canvas.deleteLater()
        QgsApplication.processEvents()


def event(canvas, kind, point, button=Qt.LeftButton, crs: str = UTM) -> QgsMapMouseEvent:
    """A mouse event at the canvas pixel of the UTM map `point` (shown in `crs`)."""
    if crs != UTM:
        point = _transform(UTM, crs).transform(QgsPointXY(*point))
    pixel = canvas.getCoordinateTransform().transform(QgsPointXY(*point))
    held = Qt.NoButton if kind == QEvent.MouseButtonRelease else button
    return QgsMapMouseEvent(canvas, kind, QPoint(round(pixel.x()), round(pixel.y())), button, held)


def click(dock, row, col, button=Qt.LeftButton, crs: str = UTM) -> None:
    """Press and release at a pixel position of the scene, through the map tool."""
    point = map_xy(row, col)
    dock.tool.canvasPressEvent(event(dock.canvas, QEvent.MouseButtonPress, point, button, crs))
    dock.tool.canvasReleaseEvent(event(dock.canvas, QEvent.MouseButtonRelease, point, button, crs))


CENTRE = ((SQUARE[0] + SQUARE[2]) / 2, (SQUARE[1] + SQUARE[3]) / 2)


def test_embedding_task_fills_the_cache(cache) -> None:
    """The fixture ran *Compute embeddings* as a QgsTask to the end; the cache reopens."""
    from tilesam.cache.store import EmbeddingStore

    info = EmbeddingStore.open(cache, mode="r").info()
    assert info["complete"] and info["signature"]["tiling"]["tile_size"] == 256


def test_click_draws_the_object_and_commit_appends_it(scene, cache) -> None:
    with open_dock(scene, cache) as dock:
        click(dock, *CENTRE)
        band = dock.annotator.mask_band.asGeometry()
        assert iou(band, square_geometry()) > 0.6
        live = QgsGeometry(dock.annotator.geometry)
        layer, object_id = dock.commit()
        assert object_id == 1 and layer.featureCount() == 1
        assert layer.crs() == dock.layer_box.currentLayer().crs()
        feature = next(layer.getFeatures())
        assert feature.geometry().equals(live) and feature["id"] == 1
        assert feature["area"] == pytest.approx(live.area()) and 0 < feature["score"] <= 1
        assert QgsProject.instance().mapLayer(layer.id()) is layer
        assert dock.annotator.mask_band.asGeometry().isEmpty()  # a new object starts
        layer.undoStack().undo()
        assert layer.featureCount() == 0
        layer.undoStack().redo()
        assert layer.commitChanges() and layer.featureCount() == 1
        assert Path(layer.source().split("|")[0]) == scene.with_name("scene_objects.gpkg")


def test_right_click_adds_a_negative_point(scene, cache) -> None:
    with open_dock(scene, cache) as dock:
        click(dock, *CENTRE)
        before = QgsGeometry(dock.annotator.geometry)
        click(dock, SQUARE[0] + 4, SQUARE[1] + 4, Qt.RightButton)  # a corner of the square
        assert dock.annotator.state.labels == [1, 0]
        assert not dock.annotator.geometry.equals(before)
        assert dock.annotator.point_bands[0].numberOfVertices() == 1


def test_drag_draws_a_box(scene, cache) -> None:
    with open_dock(scene, cache) as dock:
        y0, x0, y1, x1 = SQUARE
        tool, canvas = dock.tool, dock.canvas
        tool.canvasPressEvent(event(canvas, QEvent.MouseButtonPress, map_xy(y0 - 2, x0 - 2)))
        tool.canvasMoveEvent(event(canvas, QEvent.MouseMove, map_xy(y1, x1)))
        assert not tool.box_band.asGeometry().isEmpty()
        tool.canvasReleaseEvent(event(canvas, QEvent.MouseButtonRelease, map_xy(y1 + 2, x1 + 2)))
        assert dock.annotator.state.box is not None and not dock.annotator.state.points
        assert iou(dock.annotator.mask_band.asGeometry(), square_geometry()) > 0.6
        assert tool.box_band.asGeometry().isEmpty()


def test_canvas_in_another_crs(scene, cache) -> None:
    """On a canvas in longitude / latitude the click lands on the same object, and the
    mask is drawn reprojected; committed, it is in the raster's CRS."""
    with open_dock(scene, cache, crs=LONLAT) as dock:
        click(dock, *CENTRE, crs=LONLAT)
        band = dock.annotator.mask_band.asGeometry()
        assert band.boundingBox().xMaximum() < 180  # drawn in degrees
        assert iou(band, square_geometry(LONLAT)) > 0.6
        layer, _ = dock.commit()
        assert layer.crs() == QgsCoordinateReferenceSystem(UTM)
        assert iou(next(layer.getFeatures()).geometry(), square_geometry()) > 0.6
        layer.rollBack()


def test_missing_tiles_are_embedded_on_demand(scene, tmp_path) -> None:
    """Without *Compute embeddings* a click embeds its tiles in a background task."""
    with open_dock(scene, tmp_path / "fresh.zarr") as dock:
        click(dock, *CENTRE)
        assert dock.annotator.pending is not None
        wait(lambda: dock.annotator.pending is None)
        assert iou(dock.annotator.mask_band.asGeometry(), square_geometry()) > 0.6
        assert 0 < dock.annotator.session.n_done < dock.annotator.session.n_tiles


def test_click_outside_the_raster_is_refused(scene, cache) -> None:
    with open_dock(scene, cache) as dock:
        dock.canvas.setExtent(QgsRectangle(399000, 5098000, 402000, 5101000))
        QgsApplication.processEvents()
        click(dock, -100, -100)
        assert "Outside the scene" in dock.status.text() and not dock.annotator.state.points
        assert dock.annotator.mask_band.asGeometry().isEmpty()
        assert dock.commit() is None and "nothing to commit" in dock.status.text()


def test_cancelled_embedding_resumes(scene, tmp_path) -> None:
    with open_dock(scene, tmp_path / "cancelled.zarr") as dock:
        dock.compute_embeddings()
        dock.compute_embeddings()  # the button cancels the running task
        wait(lambda: dock.task is None)
        session = dock.annotator.session
        assert "cancelled" in dock.status.text() or session.missing_tiles() == []
        dock.compute_embeddings()
        wait(lambda: dock.task is None)
        assert session.missing_tiles() == []


def test_unload_removes_tool_and_bands(scene, cache) -> None:
    with open_dock(scene, cache) as dock:
        click(dock, *CENTRE)
        bands = [dock.annotator.mask_band, dock.tool.box_band]
        dock.unload()
        assert dock.canvas.mapTool() is None
        assert all(band.scene() is None for band in bands)
        dock.unload = lambda: None  # already done
