"""The ``M`` key's alternative masks in a real viewer: the model's masks are computed in a
worker (the tile the prompt falls in may have to be embedded first), so that the key
returns at once; they are drawn when they come, unless the prompts changed meanwhile."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding
from tilesam_napari._layers import CURRENT, POINTS

from tilesam.errors import TileSAMError

POINT = (120, 80)


@pytest.fixture
def annotating(widget, nuclei, settings):
    """The annotator on the nuclei sample in 128-pixel tiles (there the model's first mask,
    in the point's tile alone, differs from the object stitched across tiles), with the
    object of `POINT` on screen; and the model's masks for it."""
    layer = widget.viewer.add_image(nuclei, name="img")
    ann = widget.annotator
    ann.setup(layer, dataclasses.replace(settings, tile_size=128))
    ann.segment(points=[POINT])
    masks = [r.mask for r in ann.session.candidates(points=[POINT])]
    assert not np.array_equal(_shown(widget.viewer), masks[0])
    return ann, masks


def _shown(viewer):
    return viewer.layers[CURRENT].data > 0


def _press_m(viewer):
    """What napari calls for the M key with the prompts layer active."""
    layer = viewer.layers[POINTS]
    layer.keymap[coerce_keybinding("M")](layer)


def _held(monkeypatch, session):
    """Make `session.candidates` wait for the returned `release` event (10 s at most);
    `callers` lists the threads that called it, `returned` is set when it returns."""
    release, returned, callers = threading.Event(), threading.Event(), []
    candidates = session.candidates

    def held(*args, **kwargs):
        callers.append(threading.current_thread())
        release.wait(timeout=10)
        try:
            return candidates(*args, **kwargs)
        finally:
            returned.set()

    monkeypatch.setattr(session, "candidates", held)
    return release, returned, callers


def test_m_returns_while_the_masks_are_computed_and_draws_them_when_ready(
    annotating, widget, wait_idle, qtbot, monkeypatch, notes
):
    ann, masks = annotating
    viewer = widget.viewer
    best = _shown(viewer)
    release, returned, callers = _held(monkeypatch, ann.session)
    _press_m(viewer)
    qtbot.waitUntil(lambda: bool(callers), timeout=5_000)
    # The key returned while the masks are being computed, not in the viewer's thread.
    assert callers[0] is not threading.main_thread()
    assert not returned.is_set() and ann.busy
    np.testing.assert_array_equal(_shown(viewer), best)
    _press_m(viewer)  # pressed again meanwhile: nothing more is started
    release.set()
    qtbot.waitUntil(lambda: np.array_equal(_shown(viewer), masks[0]), timeout=20_000)
    wait_idle(ann)
    assert len(callers) == 1
    assert any("still being computed" in n for n in notes())
    # Once computed, M goes through them at once.
    assert ann.next_mask() == 2
    np.testing.assert_array_equal(_shown(viewer), masks[1])


def test_masks_for_prompts_changed_meanwhile_are_not_drawn(
    annotating, widget, wait_idle, monkeypatch
):
    ann, masks = annotating
    viewer = widget.viewer
    release, _, _ = _held(monkeypatch, ann.session)
    _press_m(viewer)
    # A second click while they are computed: its object, from the cache, is shown at once.
    new = ann.session.segment(points=[POINT, (30, 200)]).mask
    assert not np.array_equal(new, masks[0])
    viewer.layers[POINTS].add([[30, 200]])
    np.testing.assert_array_equal(_shown(viewer), new)
    release.set()
    wait_idle(ann)
    np.testing.assert_array_equal(_shown(viewer), new)
    assert ann._alternatives.choice == 0 and len(ann._alternatives.masks) == 1


def test_a_failure_computing_the_masks_is_a_notification(
    annotating, widget, wait_idle, monkeypatch, notes
):
    ann, _ = annotating
    best = _shown(widget.viewer)

    def fails(*args, **kwargs):
        raise TileSAMError("No space left on device")

    monkeypatch.setattr(ann.session, "candidates", fails)
    _press_m(widget.viewer)
    wait_idle(ann)
    assert "No space left on device" in notes()
    np.testing.assert_array_equal(_shown(widget.viewer), best)
    assert ann._alternatives.choice == 0


def test_m_cycles_through_alternative_masks(widget, wait_idle, nuclei, settings):
    layer = widget.viewer.add_image(nuclei, name="img")
    ann = widget.annotator
    ann.setup(layer, settings)
    ann.segment(points=[POINT])
    seen = [_shown(widget.viewer)]
    assert ann.next_mask() is None  # the model's masks are computed in a worker ...
    wait_idle(ann)
    seen.append(_shown(widget.viewer))  # ... and the first is shown when they come
    for index in (2, 3, 0):  # the model's other two, then back to the best stitched mask
        assert ann.next_mask() == index
        seen.append(_shown(widget.viewer))
    assert len({s.tobytes() for s in seen}) > 1
    np.testing.assert_array_equal(seen[0], seen[4])
