"""The map tool's session opens in a background `QgsTask`: off the GUI thread, with the
dock saying so, clicks made meanwhile answered once it is open, errors shown, and a dock
closed (the plugin unloaded) or an opening cancelled meanwhile leaving nothing behind.

`slow_open` holds the core's opening (``tilesam.Session``) until the test releases it,
as loading a 2.5 GB checkpoint or sampling a huge raster would.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from types import SimpleNamespace

import pytest

pytest.importorskip("qgis.core")

from _mapcanvas import (  # noqa: E402 - the map tool's test bench
    CENTRE,
    HOLD_S,
    SQUARE,
    click,
    fake_iface,
    iou,
    open_dock,
    square_geometry,
    wait,
)
from qgis.core import Qgis, QgsApplication, QgsProject  # noqa: E402
from qgis.PyQt import sip  # noqa: E402
from qgis.PyQt.QtCore import QEvent, Qt, QTimer  # noqa: E402


@pytest.fixture
def slow_open(monkeypatch):
    """Wraps the core's opening (``tilesam.Session``, and the model's loading): each call
    records its thread and waits for ``release``; the sessions made and those closed are
    recorded too."""
    import tilesam
    import tilesam.models.loading as loading

    record = SimpleNamespace(threads=[], sessions=[], closed=[])
    record.started, record.release = threading.Event(), threading.Event()
    real_session, real_model = tilesam.Session, loading.shared_model

    def session(*args, **kwargs):
        record.threads.append(threading.current_thread())
        record.started.set()
        record.release.wait(HOLD_S)
        made = real_session(*args, **kwargs)
        close = made.close
        made.close = lambda: (record.closed.append(made), close())
        record.sessions.append(made)
        return made

    def model(*args, **kwargs):
        record.threads.append(threading.current_thread())
        return real_model(*args, **kwargs)

    monkeypatch.setattr(tilesam, "Session", session)
    monkeypatch.setattr(loading, "shared_model", model)
    yield record
    record.release.set()
    from tilesam_qgis import _maptask

    wait(lambda: not _maptask._RUNNING)  # no opening outlives its test


def test_session_opens_off_the_gui_thread_and_the_gui_responds(scene, tmp_path, slow_open):
    with open_dock(scene, tmp_path / "scene.zarr") as dock:
        start = time.monotonic()
        click(dock, *CENTRE, answer=False)
        assert time.monotonic() - start < HOLD_S / 2  # the click did not wait for the open
        assert slow_open.started.wait(HOLD_S)
        assert dock.annotator.session is None and dock.annotator.opening is not None
        assert "Opening scene.tif with tiny..." in dock.status.text()
        assert "1 click(s)" in dock.status.text() and dock.progress.maximum() == 0
        assert dock.embed_button.text() == "Cancel opening"
        assert not dock.layer_box.isEnabled()
        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        timer.start(5)
        wait(lambda: len(ticks) >= 5, HOLD_S / 2)  # the event loop runs meanwhile
        timer.stop()
        assert not slow_open.release.is_set() and dock.annotator.session is None
        slow_open.release.set()
        wait(lambda: dock.annotator.opening is None)
        main = threading.main_thread()
        assert len(slow_open.threads) == 2 and all(t is not main for t in slow_open.threads)
        assert dock.annotator.session is slow_open.sessions[0]
        assert dock.progress.maximum() == 100 and dock.layer_box.isEnabled()
        assert dock.embed_button.text() == "Compute embeddings"


def test_clicks_made_while_opening_are_answered_once_open(scene, tmp_path, slow_open):
    with open_dock(scene, tmp_path / "scene.zarr") as dock:
        click(dock, *CENTRE, answer=False)
        click(dock, SQUARE[0] + 4, SQUARE[1] + 4, Qt.RightButton, answer=False)
        assert "2 click(s)" in dock.status.text()
        assert not dock.annotator.state.points and dock.annotator.point_bands[1].size() == 0
        slow_open.release.set()
        wait(lambda: dock.annotator.opening is None and dock.annotator.pending is None)
        assert dock.annotator.state.labels == [1, 0]  # both, in order
        assert dock.annotator.point_bands[1].size() == dock.annotator.point_bands[0].size() == 1
        assert iou(dock.annotator.mask_band.asGeometry(), square_geometry()) > 0.5
        assert "Opening" not in dock.status.text()


@pytest.mark.parametrize("how", ["dock button", "task bar"])
def test_cancelled_opening_drops_its_clicks_and_closes_its_session(
    scene,
    tmp_path,
    slow_open,
    how,
) -> None:
    """The dock's *Cancel opening* gives the opening up at once; QGIS's task bar cancels
    the task, which is refused when it ends. Either way the session it opened is closed."""
    with open_dock(scene, tmp_path / "scene.zarr") as dock:
        click(dock, *CENTRE, answer=False)
        assert slow_open.started.wait(HOLD_S)
        if how == "dock button":
            assert dock.compute_embeddings() is None  # the button reads "Cancel opening"
            assert dock.annotator.opening is None and dock.task is None
        else:
            dock.annotator.opening.cancel()  # as QGIS's task manager does
        slow_open.release.set()
        wait(lambda: slow_open.closed)
        wait(lambda: dock.annotator.opening is None)
        assert slow_open.closed == slow_open.sessions and dock.annotator.session is None
        assert "opening cancelled" in dock.status.text()
        assert not dock.annotator.state.points and dock.annotator.mask_band.size() == 0
        assert dock.embed_button.text() == "Compute embeddings"
        click(dock, *CENTRE)  # opens again, and answers
        wait(lambda: dock.annotator.pending is None)
        assert dock.annotator.session is slow_open.sessions[1]
        assert iou(dock.annotator.mask_band.asGeometry(), square_geometry()) > 0.5


def test_opening_error_is_shown_in_the_dock_and_message_bar(scene, tmp_path) -> None:
    ctx = open_dock(scene, tmp_path / "scene.zarr")
    ctx.dock.iface = fake_iface(ctx.canvas)
    with ctx as dock:
        dock.model_box.setCurrentText("no_such_model")
        click(dock, *CENTRE)
        assert "Unknown model name 'no_such_model'" in dock.status.text()
        [item] = dock.iface.bar.items()
        assert "no_such_model" in item.text() and item.level() == Qgis.Critical
        assert dock.annotator.session is None and not dock.annotator.state.points
        assert dock.progress.maximum() == 100 and dock.model_box.isEnabled()
        dock.iface.bar.clearWidgets()
        dock.status.setText("")
        assert dock.compute_embeddings() is not None  # the same error, once more
        wait(lambda: dock.task is None)
        assert len(dock.iface.bar.items()) == 1 and "no_such_model" in dock.status.text()


def test_unloading_the_plugin_while_opening_is_safe(scene, tmp_path, slow_open, monkeypatch):
    """The plugin unloads at once, its dock and canvas are deleted, and the opening, when
    it ends, closes its session in its own thread and calls nothing of the dock."""
    from tilesam_qgis import _maptask
    from tilesam_qgis.plugin import TileSAMPlugin

    errors = []  # an exception in a Qt callback goes to sys.excepthook
    monkeypatch.setattr(sys, "excepthook", lambda *exc: errors.append(exc))
    ctx = open_dock(scene, tmp_path / "scene.zarr")
    dock = ctx.dock
    dock.iface = iface = fake_iface(ctx.canvas)
    iface.addDockWidget(Qt.RightDockWidgetArea, dock)  # as `create_dock` does
    plugin = TileSAMPlugin(iface)
    plugin.dock = dock
    click(dock, *CENTRE, answer=False)
    assert slow_open.started.wait(HOLD_S)
    task = weakref.ref(dock.annotator.opening)  # no reference of the test keeps it alive
    start = time.monotonic()
    plugin.unload()
    assert time.monotonic() - start < HOLD_S / 2  # it did not wait for the opening
    dock.unload = lambda: None  # done by the plugin
    ctx.__exit__(None, None, None)  # the layer and the canvas go too
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)  # `deleteLater` now
    gc.collect()
    assert sip.isdeleted(dock) and task() in _maptask._RUNNING
    slow_open.release.set()
    wait(lambda: not _maptask._RUNNING)
    main = threading.main_thread()
    assert slow_open.closed == slow_open.sessions and len(slow_open.sessions) == 1
    assert all(thread is not main for thread in slow_open.threads)
    assert errors == []


def test_raster_removed_while_opening_gives_the_opening_up(scene, tmp_path, slow_open, monkeypatch):
    """No raster left in the project: the clicks waiting are dropped, and the session
    opened for the removed layer is closed, not answered on a deleted layer."""
    errors = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: errors.append(exc))
    with open_dock(scene, tmp_path / "scene.zarr") as dock:
        click(dock, *CENTRE, answer=False)
        assert slow_open.started.wait(HOLD_S)
        QgsProject.instance().removeAllMapLayers()
        assert dock.layer_box.currentLayer() is None and dock.annotator.opening is None
        assert "Add a raster layer" in dock.status.text()
        slow_open.release.set()
        wait(lambda: slow_open.closed)
        assert slow_open.closed == slow_open.sessions and not dock.annotator.state.points
    assert errors == []
