"""The interactive map tool, driven by synthetic canvas events on a real `QgsMapCanvas`
(offscreen): click / box → live mask → Commit into a GeoPackage → Undo; embedding in a
`QgsTask`; a canvas in another CRS than the raster's; a reopened cache answering without
the model; the raster removed from the project. (Opening the session in a background
task: ``test_maptool_opening.py``; tasks under way when the session closes:
``test_maptool_closing.py``.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
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
from tilesam_qgis._mapannotator import NO_RASTER  # noqa: E402


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


#: A fresh QGIS process with the plugin registered (as QGIS loads it) that reopens a cache
#: in the dock and clicks: whether the click was answered, and whether torch was imported.
FRESH_QGIS = """
import sys
from pathlib import Path
sys.path[:0] = sys.argv[3:]
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
import tilesam_qgis
tilesam_qgis.classFactory(None).initProcessing()
from _mapcanvas import CENTRE, click, open_dock
with open_dock(Path(sys.argv[1]), Path(sys.argv[2])) as dock:
    click(dock, *CENTRE)
    print("answered", dock.annotator.area > 0, "torch", "torch" in sys.modules)
app.exitQgis()
"""


@pytest.fixture
def model_loads(monkeypatch) -> list[threading.Thread]:
    """The threads in which a session loads its model (the core's `resolve_model`, which
    the lazy ``Session.model`` calls)."""
    from tilesam.segment import model_source

    threads, real = [], model_source.resolve_model

    def resolve(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(model_source, "resolve_model", resolve)
    return threads


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


def test_object_reaching_tiles_not_embedded_shows_at_once_then_whole(scene, tmp_path) -> None:
    """No tile is embedded in the GUI thread: a prompt whose object goes on into tiles not
    embedded yet is answered at once from the cache alone, and whole by a background task."""
    with open_dock(scene, tmp_path / "part.zarr", ready=True) as dock:
        session = dock.annotator.session
        session.compute_tiles([(0, 0, 0)])
        tool, canvas = dock.tool, dock.canvas
        whole = (-1, -1, 513, 513)  # the whole raster: a box no tile holds, seeded in each
        tool.canvasPressEvent(event(canvas, QEvent.MouseButtonPress, map_xy(*whole[:2])))
        tool.canvasMoveEvent(event(canvas, QEvent.MouseMove, map_xy(*whole[2:])))
        tool.canvasReleaseEvent(event(canvas, QEvent.MouseButtonRelease, map_xy(*whole[2:])))
        shown = dock.annotator.result  # before the event loop ran again
        assert [v.tile for v in shown.tiles] == [(0, 0)]
        assert len(shown.waiting) == session.n_tiles - 1
        assert dock.annotator.pending is not None
        wait(lambda: dock.annotator.pending is None)
        assert dock.annotator.result.waiting == () and session.n_done == session.n_tiles


def _box_over_the_raster_in_part(dock) -> None:
    """One tile embedded, a box over the whole raster: shown at once from that tile, while
    a task embeds the others."""
    dock.annotator.session.compute_tiles([(0, 0, 0)])
    tool, canvas = dock.tool, dock.canvas
    whole = (-1, -1, 513, 513)
    tool.canvasPressEvent(event(canvas, QEvent.MouseButtonPress, map_xy(*whole[:2])))
    tool.canvasMoveEvent(event(canvas, QEvent.MouseMove, map_xy(*whole[2:])))
    tool.canvasReleaseEvent(event(canvas, QEvent.MouseButtonRelease, map_xy(*whole[2:])))
    assert dock.annotator.result.waiting and dock.annotator.pending is not None


def test_a_commit_of_an_object_shown_in_part_commits_it_whole(scene, tmp_path) -> None:
    """Commit pressed while the mask comes from the cached tiles alone appends the whole
    object once the task has it, not the part on screen."""
    objects = tmp_path / "part_objects.gpkg"
    with open_dock(scene, tmp_path / "part.zarr", ready=True) as dock:
        dock.annotator.objects_path = objects
        _box_over_the_raster_in_part(dock)
        part = QgsGeometry(dock.annotator.geometry)
        assert dock.commit() is None and "committed whole" in dock.status.text()
        wait(lambda: dock.annotator.pending is None)
        session = dock.annotator.session
        assert session.n_done == session.n_tiles
        (layer,) = [
            lay for lay in QgsProject.instance().mapLayers().values() if objects.stem in lay.name()
        ]
        (feature,) = list(layer.getFeatures())
        assert feature.geometry().area() > 1.5 * part.area()  # the whole object, not the part
        assert "Object 1 added" in dock.status.text()
        assert dock.annotator.mask_band.asGeometry().isEmpty()  # a new object starts
        layer.rollBack()


def test_a_prompt_changed_before_the_object_is_whole_cancels_its_commit(scene, tmp_path):
    objects = tmp_path / "cancelled_objects.gpkg"
    with open_dock(scene, tmp_path / "part.zarr", ready=True) as dock:
        dock.annotator.objects_path = objects
        _box_over_the_raster_in_part(dock)
        assert dock.commit() is None
        click(dock, *CENTRE)  # a new prompt: the commit was for the box alone
        assert dock.annotator.commit_version is None and "not committed" in dock.status.text()
        wait(lambda: dock.annotator.pending is None)
        assert not objects.exists()
        assert not dock.annotator.geometry.isEmpty()  # the new object is shown


def _objects(path: Path) -> list:
    """The features of the objects layer kept in `path`, as loaded in the project."""
    (layer,) = [x for x in QgsProject.instance().mapLayers().values() if path.stem in x.name()]
    return list(layer.getFeatures()), layer


def test_a_commit_after_another_click_waits_for_that_prompt_whole(scene, tmp_path) -> None:
    """A click on an object shown in part, then Commit while the task still embeds for the
    earlier prompt: the object of the prompt as it now is gets committed, whole."""
    objects = tmp_path / "again_objects.gpkg"
    with open_dock(scene, tmp_path / "part.zarr", ready=True) as dock:
        dock.annotator.objects_path = objects
        _box_over_the_raster_in_part(dock)
        part = QgsGeometry(dock.annotator.geometry)
        click(dock, *CENTRE)  # box and point: a new prompt; the task is the box's
        assert dock.annotator.pending is not None
        assert dock.commit() is None
        wait(lambda: dock.annotator.pending is None and dock.annotator.commit_version is None)
        (feature,), layer = _objects(objects)
        assert feature.geometry().area() > 1.5 * part.area()
        layer.rollBack()


def test_a_failed_task_says_the_commit_waiting_for_it_was_not_made(scene, tmp_path) -> None:
    from tilesam.errors import TileSAMError

    objects = tmp_path / "failed_objects.gpkg"
    with open_dock(scene, tmp_path / "part.zarr", ready=True) as dock:
        dock.annotator.objects_path = objects
        session = dock.annotator.session
        cached_only = session.segment

        def embedding_fails(prompt, embed_missing=True, **kwargs):
            if embed_missing:
                raise TileSAMError("No space left on device")
            return cached_only(prompt, embed_missing=False, **kwargs)

        session.segment = embedding_fails
        _box_over_the_raster_in_part(dock)
        assert dock.commit() is None
        wait(lambda: dock.annotator.pending is None)
        assert "was not committed" in dock.status.text()
        assert dock.commit() is None and "embedding the rest failed" in dock.status.text()
        assert not objects.exists()


def test_an_error_of_the_cache_only_answer_is_said_not_raised(scene, cache, monkeypatch):
    """The click answered in the GUI thread (its tiles cached) reports the core's error in
    the dock and the message bar, as the background task does, instead of raising from a
    Qt slot."""
    from tilesam.errors import TileSAMError

    with open_dock(scene, cache) as dock:
        click(dock, *CENTRE)  # opens the session; this one is answered
        assert dock.annotator.area > 0

        def damaged(*args, **kwargs):
            raise TileSAMError("Tile (0, 1, 1) of embedding cache 'scene.zarr' is damaged")

        monkeypatch.setattr(dock.annotator.session, "segment", damaged)
        click(dock, CENTRE[0] + 3, CENTRE[1] + 3)
        assert "is damaged" in dock.status.text()
        assert dock.annotator.pending is None  # no task started for it


def test_enter_commits_and_says_so_and_an_error_is_said_not_raised(scene, cache, monkeypatch):
    """Enter (the map tool's key) commits as the dock's button does: the outcome in the
    dock, a layer that cannot be written reported there instead of raised from the event."""
    from qgis.PyQt.QtGui import QKeyEvent
    from tilesam_qgis import _mapcommit

    from tilesam.errors import TileSAMError

    def enter(dock) -> None:
        dock.tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Return, Qt.NoModifier))

    with open_dock(scene, cache) as dock:
        click(dock, *CENTRE)

        def unwritable(*args, **kwargs):
            raise TileSAMError("'scene_objects.gpkg' cannot be written: it is read-only")

        with monkeypatch.context() as patch:
            patch.setattr(_mapcommit, "objects_layer", unwritable)
            enter(dock)
        assert "read-only" in dock.status.text()
        assert dock.annotator.area > 0  # the object is still there to commit
        enter(dock)
        assert re.match(r"Object \d+ added to", dock.status.text())  # ids go on per layer
        assert dock.annotator.mask_band.asGeometry().isEmpty()


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


def test_reopened_cache_answers_clicks_without_loading_the_model(scene, cache, model_loads):
    """The dock opens its session by model name: the cache the dock made for ``tiny``
    answers from the decoder weights it keeps, and the model is never loaded."""
    with open_dock(scene, cache) as dock:
        click(dock, *CENTRE)
        assert dock.annotator.pending is None  # answered at once, in the GUI thread
        assert iou(dock.annotator.mask_band.asGeometry(), square_geometry()) > 0.6
        assert dock.annotator.session._model is None and model_loads == []
        assert dock.compute_embeddings() is not None  # nothing to embed: still no model
        wait(lambda: dock.task is None)
        assert dock.annotator.session._model is None and model_loads == []


def test_missing_tiles_load_the_model_shared_with_processing(scene, tmp_path, model_loads):
    """A cache with tiles missing reopens without the model too; a click on a missing tile
    loads it (in the background) to embed, the very model Processing's sessions get."""
    from tilesam import Session
    from tilesam.models.loading import shared_model

    path = tmp_path / "partial.zarr"
    with Session(str(scene), "tiny", path, tile_size=256) as core:
        assert core.embed(progress=False, extent=(0, 0, 8, 8)) == 1  # not the square's tile
    model_loads.clear()
    with open_dock(scene, path, ready=True) as dock:
        session = dock.annotator.session
        assert session._model is None and model_loads == []
        click(dock, *CENTRE)
        assert dock.annotator.pending is not None
        wait(lambda: dock.annotator.pending is None)
        assert iou(dock.annotator.mask_band.asGeometry(), square_geometry()) > 0.6
        assert len(model_loads) == 1 and model_loads[0] is not threading.main_thread()
        assert session._model is shared_model("tiny")  # as `tilesam:embed` loads it


def test_removed_raster_is_forgotten_and_clicks_are_refused(scene, cache, monkeypatch):
    """The last raster removed from the project (its layer deleted): the object and the
    session go, and a click or a commit says there is no raster, touching no layer."""
    errors = []  # an exception in a Qt callback goes to sys.excepthook
    monkeypatch.setattr(sys, "excepthook", lambda *exc: errors.append(exc))
    with open_dock(scene, cache) as dock:
        click(dock, *CENTRE)
        session, closed = dock.annotator.session, []
        close = session.close
        session.close = lambda: (closed.append(session), close())
        QgsProject.instance().removeAllMapLayers()
        assert dock.annotator.layer is None and dock.annotator.session is None
        assert closed == [session] and dock.annotator.mask_band.asGeometry().isEmpty()
        assert "Add a raster layer" in dock.status.text()
        click(dock, *CENTRE)
        assert dock.status.text() == NO_RASTER and not dock.annotator.state.points
        assert dock.annotator.opening is None and dock.annotator.session is None
        assert dock.commit() is None and dock.compute_embeddings() is None
    assert errors == []


def test_reopened_cache_imports_no_torch(scene, cache):
    """In a QGIS that has not imported torch yet, a click on a reopened cache is answered
    without importing it (as the core's fast path promises)."""
    here = Path(__file__).resolve().parent
    paths = [str(here), str(here.parents[1] / "plugins" / "qgis")]
    done = subprocess.run(
        [sys.executable, "-c", FRESH_QGIS, str(scene), str(cache), *paths],
        env=os.environ | {"QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answered True torch False" in done.stdout, done.stdout + done.stderr[-2000:]


def test_model_field_takes_a_checkpoint_file(scene, tmp_path):
    """A checkpoint file in the Model field opens, as Processing's ``MODEL`` does."""
    from tilesam.models.registry import model_entry
    from tilesam.models.weights import resolve_weights

    checkpoint = resolve_weights(model_entry("tiny"))  # the bundled weights file
    with open_dock(scene, tmp_path / "checkpoint.zarr") as dock:
        dock.model_box.setCurrentText(str(checkpoint))
        dock.annotator.request_session()
        wait(lambda: dock.annotator.opening is None)
        session = dock.annotator.session
        assert session is not None, dock.status.text()
        assert session.model.name == checkpoint.stem
