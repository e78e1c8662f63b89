"""Fill between slices (Shift+F): each committed object's slices between its annotated
slices are interpolated with no model, written under its own id as one commit that Undo
takes back; an object committed on one slice only is one notification and changes nothing.
The advanced settings' *Fill gaps between annotations* reaches Propagate 3D's walk."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding
from napari.utils.notifications import NotificationSeverity, notification_manager
from tilesam_napari._layers import COMMITTED, CURRENT, POINTS
from tube_scene import SHAPE, dice, paint, tube, wait_job

from tilesam.errors import TileSAMError

LOW, HIGH = 1, 10  # the tube's annotated slices
TUBE, SQUARE = 3, 5  # the committed objects' ids


@pytest.fixture
def tube_widget(volume_widget):
    return volume_widget(SHAPE)


@pytest.fixture
def no_model(tube_widget, monkeypatch):
    """The session's decoder and encoder fail the test if asked anything."""

    class Refused:
        def __getattr__(self, name):
            raise AssertionError(f"the decoder was asked ({name})")

    def encode(*args, **kwargs):
        raise AssertionError("the encoder was asked")

    session = tube_widget.annotator.session
    monkeypatch.setattr(session, "predictor", Refused())
    for name in ("embedding", "compute_tiles", "embed"):
        monkeypatch.setattr(session, name, encode)


def test_fill_between_slices_interpolates_committed_objects_without_the_model(
    tube_widget, no_model, qtbot, notes
):
    viewer, ann = tube_widget.viewer, tube_widget.annotator
    truth = tube()
    square = np.zeros(SHAPE[1:], bool)
    square[62:76, 10:24] = True  # below the tube: another object, on slices 3 and 5
    painted = {(TUBE, LOW): truth[LOW], (TUBE, HIGH): truth[HIGH]}
    seed = paint(tube_widget, {**painted, (SQUARE, 3): square, (SQUARE, 5): square})

    viewer.layers[POINTS].keymap[coerce_keybinding("Shift-F")](viewer.layers[POINTS])
    wait_job(qtbot, tube_widget)

    labels = np.asarray(viewer.layers[COMMITTED].data)
    found = labels == TUBE
    assert dice(found[LOW : HIGH + 1], truth[LOW : HIGH + 1]) > 0.9
    assert all(dice(found[z], truth[z]) > 0.9 for z in range(LOW + 1, HIGH))
    assert not found[:LOW].any() and not found[HIGH + 1 :].any()  # nothing beyond the ends
    np.testing.assert_array_equal(
        labels == SQUARE, np.isin(np.arange(12), [3, 4, 5])[:, None, None] & square
    )
    np.testing.assert_array_equal(labels[seed > 0], seed[seed > 0])  # annotations kept
    assert not viewer.layers[CURRENT].data.any()
    assert ann.session.n_done == 0  # nothing embedded either
    said = [n for n in notes() if "filled between annotated slices" in n]
    assert len(said) == 1
    assert f"object {TUBE} on 8 slices (2 to 9)" in said[0]
    assert f"object {SQUARE} on 1 slice (4 to 4)" in said[0]

    ann.undo()  # one commit: Undo takes the whole fill back
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data, seed)


def test_an_object_on_one_slice_is_one_notification_and_nothing_changes(
    tube_widget, no_model, qtbot
):
    viewer, ann = tube_widget.viewer, tube_widget.annotator
    truth = tube()
    alone = np.zeros(SHAPE[1:], bool)
    alone[62:76, 10:24] = True
    seed = paint(
        tube_widget, {(TUBE, LOW): truth[LOW], (TUBE, HIGH): truth[HIGH], (SQUARE, 4): alone}
    )
    start = len(notification_manager.records)
    assert tube_widget.fill_between() is not None
    wait_job(qtbot, tube_widget)

    records = notification_manager.records[start:]
    errors = [str(n.message) for n in records if n.severity == NotificationSeverity.ERROR]
    assert len(errors) == 1, errors
    assert f"object(s) {SQUARE} are annotated on one slice only" in errors[0]
    assert "unexpected" not in errors[0]
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data, seed)
    with pytest.raises(TileSAMError, match="Nothing to undo"):
        ann.undo()  # no commit was made


def test_fill_gaps_reaches_the_walk_of_propagate_3d(tube_widget, qtbot, notes):
    """Walks that stop at once (no mask is 10**6 pixels) from an object shown on two
    slices: with the box ticked, the gap between is interpolated; unticked, left empty."""
    import inspect

    import tilesam

    viewer, ann, runs = tube_widget.viewer, tube_widget.annotator, tube_widget.runs
    default = inspect.signature(tilesam.propagate_mask).parameters["fill_gaps"].default
    assert runs.fill_gaps.value is default is True
    runs.rules_fields["min_area"].value = 10**6
    truth = tube()
    seed = np.zeros(SHAPE, np.uint8)
    seed[[LOW, HIGH]] = truth[[LOW, HIGH]]

    def propagate(fill: bool) -> np.ndarray:
        runs.fill_gaps.value = fill
        ann.show_volume(seed)  # the current object: the tube on its two slices
        assert tube_widget.propagate() is not None
        wait_job(qtbot, tube_widget)
        return viewer.layers[CURRENT].data > 0

    filled = propagate(True)
    assert all(dice(filled[z], truth[z]) > 0.9 for z in range(LOW + 1, HIGH))
    assert not filled[:LOW].any() and not filled[HIGH + 1 :].any()
    assert any(f"slices {LOW + 1} to {HIGH - 1} were interpolated" in n for n in notes())

    left = propagate(False)
    np.testing.assert_array_equal(left, seed > 0)  # the gap stays empty


def test_a_cancelled_fill_writes_nothing(tube_widget, no_model, qtbot, notes, hold):
    from tilesam.volumes import interpolate

    truth = tube()
    seed = paint(tube_widget, {(TUBE, LOW): truth[LOW], (TUBE, HIGH): truth[HIGH]})
    gate = hold(interpolate, "between")  # the interpolation waits until the cancel is in
    job = tube_widget.fill_between()
    job.cancel()
    gate.set()
    wait_job(qtbot, tube_widget)
    np.testing.assert_array_equal(tube_widget.viewer.layers[COMMITTED].data, seed)
    assert any("Fill between slices cancelled" in n for n in notes())


def test_fill_between_slices_on_a_2d_image_says_it_needs_a_volume(
    widget, textured, settings, notes
):
    widget.viewer.add_image(textured((64, 64), np.uint8), name="img")
    widget.annotator.setup("img", settings)
    assert widget.fill_between() is None  # refused before any job
    assert [n for n in notes() if "needs a volume" in n] == [
        "Fill between slices needs a volume (ZYX image layer); this image is 2D."
    ]
