"""A session closed while a task still uses it: the raster removed from the project (none
left, or another one chosen in its place) or the plugin unloaded during *Compute
embeddings* or a click's on-demand embedding. The task is cancelled and the session closed
once it has stopped, never under it; the dock does not wait for it.

`held_embedding` holds the core's embedding of tiles (``Session.compute_tiles``, under
both) until the test releases it, as a batch of a large encoder on a CPU would.
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

from _mapcanvas import CENTRE, HOLD_S, click, fake_iface, open_dock, wait  # noqa: E402
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer  # noqa: E402
from qgis.PyQt import sip  # noqa: E402
from qgis.PyQt.QtCore import QEvent, Qt  # noqa: E402
from tilesam_qgis._mapannotator import NO_RASTER  # noqa: E402
from tilesam_qgis._maptask import EmbedTask  # noqa: E402


@pytest.fixture
def held_embedding(monkeypatch):
    """Wraps ``Session.compute_tiles``: it waits for ``release``, reports a first batch's
    progress (as the core does after each batch), then embeds (stopping at once when
    cancelled). ``closed`` records each session closed and whether tiles were being
    embedded then."""
    from tilesam_qgis import _maptask

    from tilesam.segment.session import Session

    record = SimpleNamespace(started=threading.Event(), release=threading.Event(), closed=[])
    running = threading.Event()
    real_compute, real_close = Session.compute_tiles, Session.close

    def compute_tiles(self, tiles, *, callback=None, **kwargs):
        running.set()
        try:
            record.started.set()
            record.release.wait(HOLD_S)
            if callback is not None:
                callback(1, len(tiles))
            return real_compute(self, tiles, callback=callback, **kwargs)
        finally:
            running.clear()

    def close(self):
        record.closed.append((self, running.is_set()))
        real_close(self)

    monkeypatch.setattr(Session, "compute_tiles", compute_tiles)
    monkeypatch.setattr(Session, "close", close)
    yield record
    record.release.set()
    wait(lambda: not _maptask._USERS)  # no embedding outlives its test


@pytest.fixture
def errors(monkeypatch) -> list:
    """Exceptions raised in Qt callbacks (they go to ``sys.excepthook``)."""
    caught = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: caught.append(exc))
    return caught


@pytest.mark.parametrize("left", ["no raster", "another raster"])
def test_raster_removed_while_embedding_closes_the_session_once_it_stops(
    scene, tmp_path, held_embedding, errors, left
):
    with open_dock(scene, tmp_path / "scene.zarr", ready=True) as dock:
        session = dock.annotator.session
        task = dock.compute_embeddings()
        assert isinstance(task, EmbedTask) and held_embedding.started.wait(HOLD_S)
        project = QgsProject.instance()
        other = QgsRasterLayer(str(scene), "other") if left == "another raster" else None
        if other is not None:
            project.addMapLayer(other)
            project.removeMapLayer(dock.layer_box.currentLayer())
        else:
            project.removeAllMapLayers()
        assert dock.layer_box.currentLayer() is other
        assert dock.annotator.session is None and task.isCanceled()
        assert held_embedding.closed == []  # the embedding still reads the raster
        held_embedding.release.set()
        wait(lambda: dock.task is None)
        assert held_embedding.closed == [(session, False)] and task.error is None
        assert dock.layer_box.isEnabled() and dock.embed_button.text() == "Compute embeddings"
        if other is None:
            assert "Add a raster layer" in dock.status.text()
            click(dock, *CENTRE)
            assert dock.status.text() == NO_RASTER and dock.annotator.session is None
        else:
            assert dock.annotator.layer is other and "Cache:" in dock.status.text()
    assert errors == []


def test_unloading_the_plugin_while_embedding_is_safe(scene, tmp_path, held_embedding, errors):
    """The plugin unloads at once and its dock is deleted; the embedding, cancelled, ends
    its batch (its progress reaching no deleted widget) and then closes the session."""
    from tilesam_qgis import _maptask
    from tilesam_qgis.plugin import TileSAMPlugin

    ctx = open_dock(scene, tmp_path / "scene.zarr", ready=True)
    dock, session = ctx.dock, ctx.dock.annotator.session
    dock.iface = iface = fake_iface(ctx.canvas)
    iface.addDockWidget(Qt.RightDockWidgetArea, dock)  # as `create_dock` does
    plugin = TileSAMPlugin(iface)
    plugin.dock = dock
    task = weakref.ref(dock.compute_embeddings())  # no reference of the test keeps it alive
    assert held_embedding.started.wait(HOLD_S)
    start = time.monotonic()
    plugin.unload()
    assert time.monotonic() - start < HOLD_S / 2  # it did not wait for the batch
    dock.unload = lambda: None  # done by the plugin
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)  # `deleteLater` now
    gc.collect()
    assert sip.isdeleted(dock) and task() is not None and task().isCanceled()
    assert held_embedding.closed == []
    held_embedding.release.set()
    wait(lambda: not _maptask._USERS)
    assert held_embedding.closed == [(session, False)]
    ctx.__exit__(None, None, None)
    assert errors == []


def test_raster_removed_while_a_click_embeds_on_demand(scene, tmp_path, held_embedding, errors):
    """The click's task embeds on: the dock does not wait for it, and when it ends it
    closes the session and shows nothing (its raster is gone)."""
    with open_dock(scene, tmp_path / "scene.zarr", ready=True) as dock:
        session = dock.annotator.session
        click(dock, *CENTRE)
        assert dock.annotator.pending is not None and held_embedding.started.wait(HOLD_S)
        start = time.monotonic()
        QgsProject.instance().removeAllMapLayers()
        assert time.monotonic() - start < HOLD_S / 2  # it did not wait for the tiles
        assert dock.annotator.session is None and dock.annotator.pending is None
        assert held_embedding.closed == [] and "Add a raster layer" in dock.status.text()
        held_embedding.release.set()
        wait(lambda: held_embedding.closed)
        assert held_embedding.closed == [(session, False)]
        QgsApplication.processEvents()
        assert "Add a raster layer" in dock.status.text()  # the task's end said nothing
        assert dock.annotator.mask_band.asGeometry().isEmpty()
    assert errors == []
