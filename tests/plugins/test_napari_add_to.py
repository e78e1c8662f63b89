"""Add to selected object (Alt+A): the current object is committed into the object selected
in committed_objects, over background only, as one commit that Undo takes back; C selects
the id it commits, so an organ segmented on slices 10, 16 and 22 (C, Alt+A, Alt+A) is one
object that Fill between slices fills in between. Label 0 or an id no object has is one
notification, and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtWidgets import QPushButton
from tilesam_napari import _labels, _labels_store
from tilesam_napari._layers import COMMITTED, CURRENT, POINTS
from tube_scene import dice, tube, wait_job

from tilesam.errors import TileSAMError

SHAPE = (24, 80, 200)  # the tube of test_napari_fill, longer
SLICES = (10, 16, 22)  # where the tube is segmented
SQUARE, TUBE = 1, 2  # the ids C gives: an object committed before the tube, the tube


def _object(zs, mask: np.ndarray) -> np.ndarray:
    """A labels volume of `mask` (a volume, or a 2D mask for every slice) on slices `zs`."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[list(zs)] = mask[list(zs)] if mask.ndim == 3 else mask
    return labels


def _press(viewer, key: str) -> None:
    """What napari calls for `key` on the active layer (prompts)."""
    layer = viewer.layers[POINTS]
    layer.keymap[coerce_keybinding(key)](layer)


def _annotate(widget, zs, mask: np.ndarray, key: str | None) -> None:
    """Make `mask` on slices `zs` the current object (as prompts there, or a propagation,
    would), then press `key` (None: none)."""
    widget.annotator.show_volume(_object(zs, mask))
    if key is not None:
        _press(widget.viewer, key)


def _button(widget, text: str) -> QPushButton:
    (button,) = [b for b in widget.findChildren(QPushButton) if b.text() == text]
    return button


@pytest.fixture
def square() -> np.ndarray:
    """Another object, far from the tube (committed on slices 3 and 5 with one C)."""
    mask = np.zeros(SHAPE[1:], bool)
    mask[62:76, 20:34] = True
    return mask


def test_c_then_alt_a_on_two_more_slices_makes_one_object_that_fill_completes(
    volume_widget, square, qtbot
):
    widget, truth = volume_widget(SHAPE), tube(SHAPE)
    viewer, ann = widget.viewer, widget.annotator
    committed = viewer.layers[COMMITTED]
    _annotate(widget, [3, 5], square, "C")
    _annotate(widget, [SLICES[0]], truth, "C")
    assert committed.selected_label == TUBE  # C selected the id it gave
    _annotate(widget, [SLICES[1]], truth, "Alt-A")
    assert not viewer.layers[CURRENT].data.any() and not ann.current  # cleared, as C does
    _annotate(widget, [SLICES[2]], truth, None)
    _button(widget, "Add to selected object [Alt+A]").click()

    labels = np.array(committed.data)
    np.testing.assert_array_equal(labels == TUBE, _object(SLICES, truth) > 0)
    assert labels.max() == TUBE  # no new id
    ann.undo()  # one commit: the add on the last slice, and only it
    kept = labels.copy()
    kept[SLICES[2]] = 0
    np.testing.assert_array_equal(committed.data, kept)
    _annotate(widget, [SLICES[2]], truth, "Alt-A")
    np.testing.assert_array_equal(committed.data, labels)

    _press(viewer, "Shift-F")
    wait_job(qtbot, widget)
    found = np.asarray(committed.data) == TUBE
    between = [z for z in range(SLICES[0] + 1, SLICES[2]) if z != SLICES[1]]
    assert all(dice(found[z], truth[z]) > 0.9 for z in between), [
        round(dice(found[z], truth[z]), 3) for z in between
    ]
    assert not found[: SLICES[0]].any() and not found[SLICES[2] + 1 :].any()
    assert (np.asarray(committed.data)[4] == SQUARE).sum() == square.sum()  # filled too


@pytest.mark.parametrize(
    ("selected", "said"), [(0, "Label 0 (the background) is selected"), (7, "no object 7")]
)
def test_adding_to_label_0_or_to_no_object_is_one_notification_and_writes_nothing(
    volume_widget, selected, said
):
    widget, truth = volume_widget(SHAPE), tube(SHAPE)
    viewer, ann = widget.viewer, widget.annotator
    committed = viewer.layers[COMMITTED]
    _annotate(widget, [SLICES[0]], truth, "C")
    before = np.array(committed.data)
    _annotate(widget, [SLICES[1]], truth, None)
    committed.selected_label = selected
    start = len(notification_manager.records)
    _press(viewer, "Alt-A")

    records = notification_manager.records[start:]
    errors = [str(n.message) for n in records if n.severity == NotificationSeverity.ERROR]
    assert len(errors) == 1 and len(records) == 1, errors
    assert said in errors[0]
    assert "select the object to add to in committed_objects" in errors[0]
    assert "press C to commit a new object" in errors[0]
    np.testing.assert_array_equal(committed.data, before)
    assert ann.current  # the object stays, for C or for another selection
    ann.undo()  # the only commit is the C before
    assert not committed.data.any()
    with pytest.raises(TileSAMError, match="Nothing to undo"):
        ann.undo()


def test_adding_to_an_object_of_a_labels_store_keeps_its_next_id(tmp_path):
    image = {"shape": [2, 40, 40], "dtype": "|u1", "axes": "ZYX", "content": "sample-v1:add"}
    array, _ = _labels_store.open_committed(tmp_path / "img.labels.zarr", (2, 40, 40), image)
    mask = np.ones((5, 5), bool)
    for k in (1, 2):
        assert _labels.commit(array, [_labels.Window(0, (0, 10 * k), mask)])[0] == k
    assert _labels.contains(array, 1) and not _labels.contains(array, 3)
    new_id, edits = _labels.commit(array, [_labels.Window(1, (0, 0), mask)], into=1)
    assert new_id == 1 and (array[1, :5, :5] == 1).all() and not array[1, 5:].any()
    assert _labels.next_id(array) == 3  # no id used, none given back
    array[0, 30:, 30:] = 9  # painted with napari's brush, above the next id
    assert _labels.commit(array, [_labels.Window(1, (20, 20), mask)], into=9)[0] == 9
    assert _labels.next_id(array) == 10  # never given to a new object
    _labels.revert(array, edits)
    assert not array[1, :5, :5].any()
