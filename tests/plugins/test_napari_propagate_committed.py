"""Propagate 3D (Shift+S) with no current object propagates the object selected in
committed_objects from all the slices it is on (the seed: that object alone, under its id),
shows the result as the current object and says so, so that Alt+A adds it to that object.
The current object, when there is one, keeps priority; with neither, one notification says
both ways, and nothing runs."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding
from napari.utils.notifications import NotificationSeverity, notification_manager
from tilesam_napari._layers import COMMITTED, CURRENT, POINTS
from tube_scene import dice, tube, wait_job

pytest.importorskip("tilesam.volumes.propagate")

SHAPE = (24, 80, 200)  # the tube of test_napari_add_to
LOW, HIGH = 4, 18  # the tube's annotated slices, far apart
SQUARE, TUBE = 1, 2  # the ids C gives: an object committed before the tube, the tube
NOTE = f"propagated committed object {TUBE} from all the slices it is on; Alt+A adds the result"
EITHER = (
    "click on an object first, or select a committed object (its label number in "
    "committed_objects) to propagate it from all the slices it is on"
)


def _press(viewer, key: str) -> None:
    """What napari calls for `key` on the active layer (prompts)."""
    layer = viewer.layers[POINTS]
    layer.keymap[coerce_keybinding(key)](layer)


def _annotate(widget, zs, mask: np.ndarray, key: str | None) -> None:
    """Make `mask` (2D) on slices `zs` the current object, then press `key` (None: none)."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[list(zs)] = mask
    widget.annotator.show_volume(labels)
    if key is not None:
        _press(widget.viewer, key)


@pytest.fixture
def seeds(monkeypatch):
    """The seed labels every `tilesam.propagate_mask` call receives, in order."""
    import tilesam

    given, propagate = [], tilesam.propagate_mask

    def recorded(*args, mask=None, **kwargs):
        given.append(np.array(mask))
        return propagate(*args, mask=mask, **kwargs)

    monkeypatch.setattr(tilesam, "propagate_mask", recorded)
    return given


@pytest.fixture
def scene(volume_widget):
    """The tube committed on slices LOW and HIGH as one object (C, then Alt+A), after a
    square committed on slice 2; the walks stop at once (no mask is 10**6 pixels), so
    what a propagation adds is the gap between the tube's slices, interpolated."""
    widget, truth = volume_widget(SHAPE), tube(SHAPE)
    widget.runs.rules_fields["min_area"].value = 10**6
    square = np.zeros(SHAPE[1:], bool)
    square[62:76, 20:34] = True
    _annotate(widget, [2], square, "C")
    _annotate(widget, [LOW], truth[LOW], "C")
    _annotate(widget, [HIGH], truth[HIGH], "Alt-A")
    assert widget.viewer.layers[COMMITTED].selected_label == TUBE
    assert not widget.annotator.current
    return widget


def test_shift_s_without_a_current_object_propagates_the_selected_committed_object(
    scene, seeds, qtbot, notes
):
    viewer, truth = scene.viewer, tube(SHAPE)
    committed = viewer.layers[COMMITTED]
    before = np.array(committed.data)
    _press(viewer, "Shift-S")
    wait_job(qtbot, scene)

    (seed,) = seeds  # the object selected, from both its slices, under its own id
    np.testing.assert_array_equal(seed > 0, before == TUBE)
    assert set(np.unique(seed).tolist()) == {0, TUBE}
    shown = viewer.layers[CURRENT].data > 0
    assert [z for z in range(SHAPE[0]) if shown[z].any()] == list(range(LOW, HIGH + 1))
    assert all(dice(shown[z], truth[z]) > 0.9 for z in range(LOW, HIGH + 1))
    said = notes()
    assert sum(NOTE in n for n in said) == 1, said
    assert any(f"object {TUBE}, towards" in n for n in said)  # the walks name it too
    np.testing.assert_array_equal(committed.data, before)  # shown, not committed

    _press(viewer, "Alt-A")  # adds the result to the tube, over background only
    labels = np.asarray(committed.data)
    np.testing.assert_array_equal(labels == TUBE, shown & (before == 0) | (before == TUBE))
    assert labels.max() == TUBE and (labels == SQUARE).sum() == (before == SQUARE).sum()
    assert not scene.annotator.current


@pytest.mark.parametrize(
    ("selected", "why"),
    [(0, "label 0 (the background) is selected"), (7, "there is no object 7")],
)
def test_shift_s_with_nothing_to_propagate_is_one_notification_and_runs_nothing(
    scene, seeds, selected, why
):
    viewer = scene.viewer
    viewer.layers[COMMITTED].selected_label = selected
    start = len(notification_manager.records)
    _press(viewer, "Shift-S")

    records = notification_manager.records[start:]
    errors = [str(n.message) for n in records if n.severity == NotificationSeverity.ERROR]
    assert len(errors) == 1 and len(records) == 1, errors
    assert errors[0].startswith(f"No current object to propagate, and {why}")
    assert EITHER in errors[0]
    assert scene.job is None and not seeds  # nothing run
    assert not viewer.layers[CURRENT].data.any()


def test_the_current_object_keeps_priority_over_the_selected_committed_object(
    scene, seeds, qtbot, notes
):
    viewer, ann, truth = scene.viewer, scene.annotator, tube(SHAPE)
    current = np.zeros(SHAPE, np.uint8)
    current[10] = truth[10]
    ann.show_volume(current)
    assert scene.propagate() is not None
    wait_job(qtbot, scene)
    np.testing.assert_array_equal(seeds[-1], current)  # the current object, as before
    assert not any(NOTE in n for n in notes())

    ann.clear()  # no current object: the selected one, from the console too
    labels = ann.propagate(rules={"min_area": 10**6})
    np.testing.assert_array_equal(seeds[-1] > 0, np.asarray(viewer.layers[COMMITTED].data) == TUBE)
    assert (labels > 0)[LOW : HIGH + 1].reshape(HIGH + 1 - LOW, -1).any(axis=1).all()
    assert sum(NOTE in n for n in notes()) == 1


def test_m_on_a_propagated_object_says_it_has_no_prompt_and_starts_nothing(scene, notes):
    """A propagation's result is no answer to one prompt: M must not ask the model for the
    masks of an older prompt (and replace the result with them), but say why."""
    viewer, ann = scene.viewer, scene.annotator
    _annotate(scene, (LOW, HIGH), tube(SHAPE)[LOW], None)
    shown = np.array(viewer.layers[CURRENT].data)
    _press(viewer, "M")
    said = [n for n in notes() if "M shows the model's other masks" in n]
    assert len(said) == 1 and not ann.busy
    np.testing.assert_array_equal(viewer.layers[CURRENT].data, shown)
