"""The interactive map tool, driven by synthetic canvas events on a real `QgsMapCanvas`
(offscreen): click / box → live mask → Commit into a GeoPackage → Undo; embedding in a
`QgsTask`; a canvas in another CRS than the raster's. (Opening the session in a background
task: ``test_maptool_opening.py``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("qgis.core")

from _mapcanvas import (  # noqa: E402 - the map tool's test bench
    CENTRE,
    LONLAT,
    SQUARE,
    UTM,
    click,
    event,
    iou,
    map_xy,
    open_dock,
    square_geometry,
    wait,
)
from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QEvent, Qt  # noqa: E402


@pytest.fixture(scope="module")
def cache(scene, tmp_path_factory) -> Path:
    """The scene's cache, filled by the dock's *Compute embeddings* (a QgsTask)."""
    path = tmp_path_factory.mktemp("cache") / "scene.zarr"
    with open_dock(scene, path) as dock:
        opening = dock.compute_embeddings()  # the session opens first, in its own task
        assert opening is dock.annotator.opening is dock.task and opening is not None
        assert dock.embed_button.text() == "Cancel opening"
        wait(lambda: dock.annotator.opening is None)
        assert dock.task is not None and dock.embed_button.text() == "Cancel embedding"
        wait(lambda: dock.task is None)
        session = dock.annotator.session
        n = session.n_tiles
        assert session.missing_tiles() == [] and session.grid.tile_size == 256
        assert dock.progress.value() == 100 and f"{n}/{n} tiles" in dock.status.text()
    return path


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
        wait(lambda: dock.annotator.opening is None)  # the box opened the session
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
    with open_dock(scene, tmp_path / "fresh.zarr", ready=True) as dock:
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
    with open_dock(scene, tmp_path / "cancelled.zarr", ready=True) as dock:
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
