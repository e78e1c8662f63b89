"""Segment everything in napari (issue #25, item 6): the button fills ``auto_segmentation``
in a worker, with its object table as features; cancel keeps nothing; a Ctrl+click moves an
object into ``committed_objects`` and Undo commit takes it back. The bundled ``tiny``
model, on small images: the random test checkpoint finds no objects."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from napari.utils.interactions import mouse_press_callbacks
from tilesam_napari._auto import AUTO, INDEX, TAKE_MODIFIER
from tilesam_napari._layers import COMMITTED

pytest.importorskip("tilesam.automatic")


@pytest.fixture
def tiny_widget(widget):
    """The dock widget with the bundled default model (the fixture fills in the random one)."""
    widget.form.checkpoint.value = None
    return widget


def _run(widget, qtbot, points: int | None = None):
    """Press Segment everything and wait; the job's progress. With `points`, grid mode
    with `points` per side; without, the mode "auto" (tiny's instance mode)."""
    widget.runs.mode.value = "auto" if points is None else "grid"
    widget.grid_points.value = points
    steps = []
    widget.auto_button.native.click()
    assert widget.job.running  # in a worker: the click returned at once
    widget.job.worker.yielded.connect(steps.append)
    with qtbot.waitSignal(widget.job.worker.finished, timeout=120_000):
        pass
    return [s for s in steps if isinstance(s, tuple)]


def _ctrl_click(layer, yx, modifiers=(TAKE_MODIFIER,)):
    """A mouse press on `layer` at image pixel `yx` (or `zyx`), as napari sends it."""
    event = SimpleNamespace(
        type="mouse_press",
        modifiers=modifiers,
        button=1,
        position=tuple(layer.data_to_world(yx)),
        view_direction=None,
        dims_displayed=[layer.ndim - 2, layer.ndim - 1],
    )
    mouse_press_callbacks(layer, event)


def test_the_button_fills_the_layer_and_its_table(tiny_widget, qtbot, nuclei):
    viewer = tiny_widget.viewer
    image = viewer.add_image(nuclei, name="nuclei", scale=(0.5, 0.5), translate=(10, 20))
    steps = _run(tiny_widget, qtbot)
    assert steps and steps[-1][0] == steps[-1][1]  # the progress bar reached its end
    layer = viewer.layers[AUTO]
    labels = layer.data
    ids = set(np.unique(labels)) - {0}
    assert labels.shape == nuclei.shape and len(ids) > 30  # 65 nuclei
    np.testing.assert_array_equal(layer.scale, image.scale)
    np.testing.assert_array_equal(layer.translate, image.translate)
    table = layer.features
    assert len(table) == len(ids) and set(table[INDEX]) == ids == set(table["id"])
    assert {"area", "centroid_y", "bbox_x1", "score", "mode"} <= set(table.columns)
    row = table.iloc[0]
    assert row["area"] == np.count_nonzero(labels == row["id"])
    assert viewer.layers.selection.active is layer  # ready for Ctrl+clicks
    assert any("Features table" in name for name in viewer.window.dock_widgets)
    assert tiny_widget.auto_button.enabled and not tiny_widget.cancel_button.enabled


def test_cancel_keeps_no_layer_and_says_so(tiny_widget, qtbot, nuclei, notes, hold):
    tiny_widget.viewer.add_image(nuclei, name="nuclei")
    assert tiny_widget.setup()
    # The work waits until the cancel is in: the small image could be done before it lands.
    gate = hold(tiny_widget.annotator.session, "segment_everything")
    job = tiny_widget.segment_everything()
    tiny_widget.cancel_button.native.click()
    gate.set()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    assert AUTO not in tiny_widget.viewer.layers
    assert any("cancelled" in n for n in notes())


def test_ctrl_click_moves_an_object_to_committed_and_undo_puts_it_back(tiny_widget, qtbot, nuclei):
    viewer, ann = tiny_widget.viewer, tiny_widget.annotator
    viewer.add_image(nuclei, name="nuclei")
    _run(tiny_widget, qtbot, points=16)
    layer, committed = viewer.layers[AUTO], viewer.layers[COMMITTED]
    ann.segment(points=[(128, 128)])
    assert ann.commit() == 1  # the next free id is 2
    before_auto, before_committed = layer.data.copy(), committed.data.copy()
    rows = len(layer.features)
    free = [k for k in layer.features[INDEX] if not before_committed[before_auto == k].any()]
    label = max(free, key=lambda k: np.count_nonzero(before_auto == k))
    where = before_auto == label
    pixel = np.argwhere(where)[0]

    _ctrl_click(layer, pixel, modifiers=())  # a plain click takes nothing
    np.testing.assert_array_equal(layer.data, before_auto)
    _ctrl_click(layer, pixel)
    np.testing.assert_array_equal(committed.data, np.where(where, 2, before_committed))
    np.testing.assert_array_equal(layer.data, np.where(where, 0, before_auto))
    assert len(layer.features) == rows - 1 and label not in set(layer.features[INDEX])

    ann.undo()  # Undo commit: the object returns to auto_segmentation with its row
    np.testing.assert_array_equal(committed.data, before_committed)
    np.testing.assert_array_equal(layer.data, before_auto)
    assert len(layer.features) == rows and list(layer.features[INDEX]) == sorted(
        layer.features[INDEX]
    )
    ann.undo()  # then the commit before it
    assert not committed.data.any()


def test_a_volume_gives_3d_objects_and_a_click_takes_every_slice(tiny_widget, qtbot):
    from tilesam.samples import load_sample

    volume = load_sample("nuclei_volume")[0][10:13]  # 3 slices of 128 x 128
    viewer = tiny_widget.viewer
    viewer.add_image(volume, name="vol", scale=(2.0, 1.0, 1.0))
    _run(tiny_widget, qtbot, points=16)
    layer = viewer.layers[AUTO]
    assert layer.data.shape == volume.shape and tuple(layer.scale) == (2.0, 1.0, 1.0)
    table = layer.features
    assert len(table) == len(set(np.unique(layer.data)) - {0}) > 0
    assert {"volume", "n_slices", "centroid_z"} <= set(table.columns)
    assert table["n_slices"].max() > 1  # objects linked across slices
    label = int(table.loc[table["n_slices"].idxmax(), INDEX])
    where = layer.data == label
    _ctrl_click(layer, np.argwhere(where)[0])
    committed = viewer.layers[COMMITTED].data
    np.testing.assert_array_equal(committed > 0, where)  # every slice of the 3D object
