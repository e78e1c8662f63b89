"""Fixtures for the napari plugin's tests: a real viewer (pytest-qt, Xvfb) and the small
randomly initialised official-format checkpoint as the model (its masks are meaningless,
but loading, embedding, caching and decoding are all real)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# `tube_scene` (a synthetic volume and its helpers) importable by this folder's tests:
# pytest's importlib mode puts no test folder on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHECKPOINT = Path(__file__).parents[1] / "data" / "fixtures" / "sam1_small_fp16.pth"


@pytest.fixture(autouse=True)
def _napari_settings_stay_in_memory():
    """napari's settings changed in a test (TileSAM's reader preferences, window sizes)
    are not written to the user's napari settings file."""
    from napari.settings import get_settings

    settings = get_settings()
    saving = settings._save_on_change  # a pydantic private attribute: not monkeypatch's
    settings._save_on_change = False
    yield
    settings._save_on_change = saving


@pytest.fixture
def settings():
    from tilesam_napari._session import Settings

    return Settings(checkpoint=str(CHECKPOINT), halo=0)


@pytest.fixture
def nuclei():
    from tilesam.samples import load_sample

    return load_sample("nuclei")[0]


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    """A viewer with the TileSAM widget docked and the test checkpoint filled in."""
    from tilesam_napari._widget import TileSAMWidget

    viewer = make_napari_viewer()
    w = TileSAMWidget(viewer)
    viewer.window.add_dock_widget(w, name="TileSAM")
    w.form.checkpoint.value = CHECKPOINT
    return w


@pytest.fixture
def volume_widget(widget, textured, settings):
    """``volume_widget(shape)``: the widget set up on ``vol``, a textured uint8 volume."""

    def make(shape):
        widget.viewer.add_image(textured(shape, np.uint8), name="vol")
        widget.annotator.setup("vol", settings)
        return widget

    return make


@pytest.fixture
def notes():
    """Messages napari's notification manager receives during the test."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    return lambda: [str(n.message) for n in notification_manager.records[start:]]


@pytest.fixture
def wait_idle(qtbot):
    """Wait until the live segmentation of an annotator has shown its result."""

    def wait(annotator, timeout=20_000):
        qtbot.waitUntil(lambda: not annotator.busy, timeout=timeout)

    return wait


@pytest.fixture
def textured():
    """A non-constant test image of any shape (the model refuses constant images)."""

    def make(shape, dtype=np.uint16):
        rng = np.random.default_rng(0)
        return (rng.random(shape) * 4000).astype(dtype)

    return make


@pytest.fixture
def hold(monkeypatch):
    """``hold(owner, name)``: make ``owner.name`` wait (60 s at most) until the returned
    event is set, so that a cancel lands while a worker is in it (small inputs could
    otherwise be done before)."""
    import threading

    def make(owner, name: str) -> threading.Event:
        gate, real = threading.Event(), getattr(owner, name)

        def held(*args, **kwargs):
            gate.wait(60)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, held)
        return gate

    return make
