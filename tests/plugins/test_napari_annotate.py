"""Prompts in a real viewer: points and boxes update `current_object`, commits give
ids 1, 2, … without overwriting, undo restores, keys work (alternative masks:
test_napari_alternatives.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tilesam_napari import _keys, annotator
from tilesam_napari._layers import BOXES, COMMITTED, CURRENT, POINTS


def _start(widget, image, settings, **layer_kw):
    layer = widget.viewer.add_image(image, name="img", **layer_kw)
    ann = widget.annotator
    ann.setup(layer, settings)
    return ann, widget.viewer


def test_adding_points_updates_current_object(widget, wait_idle, nuclei, settings):
    ann, viewer = _start(widget, nuclei, settings)
    points = viewer.layers[POINTS]
    points.add([[120, 80]])
    wait_idle(ann)
    shown = viewer.layers[CURRENT].data
    expected = ann.session.segment(points=[(120, 80)]).mask
    np.testing.assert_array_equal(shown > 0, expected)
    assert shown.any()
    # T makes the next point negative; the object is segmented again from both points.
    assert _keys.toggle_label(ann) == 0
    points.add([[30, 30]])
    wait_idle(ann)
    assert points.features["label"].tolist() == [True, False]
    expected = ann.session.segment(points=[(120, 80), (30, 30)], labels=[1, 0]).mask
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, expected)


def test_prompts_follow_layer_scale_and_translate(widget, wait_idle, nuclei, settings):
    """A point at world (y, x) reaches the core as image pixels (world - translate) / scale."""
    ann, viewer = _start(widget, nuclei, settings, scale=(0.5, 2.0), translate=(10, -4))
    points = viewer.layers[POINTS]
    points.scale, points.translate = (1, 1), (0, 0)  # the user moved the prompt layer
    points.add([[10 + 0.5 * 120, -4 + 2.0 * 80]])  # its data coordinates are now world ones
    wait_idle(ann)
    prompt = ann.prompt()
    np.testing.assert_allclose(prompt.points, [[120, 80]])
    expected = ann.session.segment(points=[(120, 80)]).mask
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, expected)


def test_commits_number_objects_and_never_overwrite(widget, wait_idle, nuclei, settings):
    ann, viewer = _start(widget, nuclei, settings)
    ann.segment(points=[(120, 80)])
    first = viewer.layers[CURRENT].data > 0
    assert ann.commit() == 1
    committed = viewer.layers[COMMITTED].data
    np.testing.assert_array_equal(committed > 0, first)
    assert len(viewer.layers[POINTS].data) == 0 and not viewer.layers[CURRENT].data.any()

    ann.segment(points=[(30, 200)])
    second = viewer.layers[CURRENT].data > 0
    assert ann.commit() == 2
    committed = viewer.layers[COMMITTED].data
    np.testing.assert_array_equal(committed[first], 1)  # object 1 untouched
    np.testing.assert_array_equal(committed[second & ~first], 2)
    assert set(np.unique(committed)) <= {0, 1, 2}

    ann.undo()
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data, np.where(first, 1, 0))
    assert ann.commit.__self__ is ann  # the console's object is the widget's


def test_box_prompt_segments_and_shift_c_clears(widget, wait_idle, nuclei, settings):
    ann, viewer = _start(widget, nuclei, settings)
    viewer.layers[BOXES].add_rectangles(np.array([[100, 60], [140, 100]]))
    wait_idle(ann)
    assert ann.prompt().box == (100, 60, 140, 100)
    expected = ann.session.segment(box=(100, 60, 140, 100)).mask
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, expected)
    ann.clear()
    assert len(viewer.layers[BOXES].data) == 0 and not viewer.layers[CURRENT].data.any()
    assert not viewer.layers[COMMITTED].data.any()


def test_with_live_mode_off_s_segments(widget, wait_idle, nuclei, settings):
    ann, viewer = _start(widget, nuclei, settings)
    widget.live.value = False
    viewer.layers[POINTS].add([[120, 80]])
    wait_idle(ann)
    assert not viewer.layers[CURRENT].data.any()
    viewer.keymap[_keybinding("S")](viewer)
    wait_idle(ann)
    assert viewer.layers[CURRENT].data.any()


def _keybinding(key):
    from napari.utils.key_bindings import coerce_keybinding

    return coerce_keybinding(key)


def test_keys_are_bound_on_viewer_and_layers(widget, nuclei, settings):
    from napari.utils.key_bindings import coerce_keybinding

    ann, viewer = _start(widget, nuclei, settings)
    for target in (viewer, viewer.layers[POINTS], viewer.layers[CURRENT]):
        for key in _keys.KEYS:
            assert coerce_keybinding(key) in target.keymap, (target, key)
    # The C key commits: call what napari calls for it on the active (prompts) layer.
    ann.segment(points=[(120, 80)])
    viewer.layers[POINTS].keymap[coerce_keybinding("C")](viewer.layers[POINTS])
    assert viewer.layers[COMMITTED].data.max() == 1


def test_console_annotator_docks_once_and_segments(make_napari_viewer, qtbot, nuclei, settings):
    viewer = make_napari_viewer()
    viewer.add_image(nuclei, name="nuclei")
    ann = annotator(viewer)
    assert annotator(viewer) is ann
    ann.setup("nuclei", settings)
    result = ann.segment(points=[(120, 80)])
    assert result.area == int((viewer.layers[CURRENT].data > 0).sum())
    assert ann.commit() == 1


def _shown_in_part(widget, textured, settings, qtbot):
    """A box over a 3 x 3 grid of 128-pixel tiles of which one is embedded: the live mask
    is shown at once from that tile, while a worker embeds the others."""
    settings = dataclasses.replace(settings, tile_size=128)
    ann, viewer = _start(widget, textured((300, 300)), settings)
    ann.session.compute_tiles([(0, 0, 0)])
    box = (0, 0, 300, 300)
    viewer.layers[BOXES].add_rectangles(np.array([box[:2], box[2:]]))
    qtbot.waitUntil(lambda: bool(ann.current), timeout=20_000)
    assert ann.session.n_done < ann.session.n_tiles  # the worker is still embedding
    return ann, viewer, box


def test_a_commit_of_an_object_shown_in_part_commits_it_whole(
    widget, wait_idle, textured, settings, qtbot
):
    """C pressed while the live mask comes from the cached tiles alone commits the whole
    object once the worker has it, not the part on screen, as an ordinary commit."""
    ann, viewer, box = _shown_in_part(widget, textured, settings, qtbot)
    assert ann.commit() is None
    assert not viewer.layers[COMMITTED].data.any()
    wait_idle(ann)
    whole = ann.session.segment(box=box).mask
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data > 0, whole)
    assert not ann.current and not len(viewer.layers[BOXES].data)
    ann.undo()
    assert not viewer.layers[COMMITTED].data.any()


def test_another_mask_picked_with_m_is_committed_as_shown(
    widget, wait_idle, textured, settings, qtbot
):
    """M on an object shown in part picks one of the model's other masks: C takes it as it
    is on screen, at once, rather than waiting for the whole best mask."""
    ann, viewer, _ = _shown_in_part(widget, textured, settings, qtbot)
    assert ann.next_mask() is None  # computed in a worker, shown when ready
    qtbot.waitUntil(lambda: ann._alternatives.choice == 1, timeout=20_000)
    chosen = viewer.layers[CURRENT].data > 0
    assert chosen.any()
    assert ann.commit() == 1
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data > 0, chosen)
    wait_idle(ann)  # the worker's answer for the cleared prompt commits nothing more
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data > 0, chosen)


def test_a_prompt_changed_before_the_object_is_whole_cancels_its_commit(
    widget, wait_idle, textured, settings, qtbot
):
    ann, viewer, box = _shown_in_part(widget, textured, settings, qtbot)
    assert ann.commit() is None
    viewer.layers[POINTS].add([[150, 150]])  # a new prompt: the commit was for the box alone
    wait_idle(ann)
    assert not viewer.layers[COMMITTED].data.any()
    expected = ann.session.segment(points=[(150, 150)], box=box).mask
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, expected)


def test_a_commit_after_another_click_waits_for_that_prompt_whole(
    widget, wait_idle, textured, settings, qtbot
):
    """A point added to an object shown in part, then C while the worker still embeds for
    the box alone: the object of the prompts as they now are is committed, whole."""
    ann, viewer, box = _shown_in_part(widget, textured, settings, qtbot)
    viewer.layers[POINTS].add([[150, 150]])
    assert ann.busy and ann.commit() is None
    wait_idle(ann)
    whole = ann.session.segment(points=[(150, 150)], box=box).mask
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data > 0, whole)


def test_a_failed_worker_says_the_commit_waiting_for_it_was_not_made(
    widget, wait_idle, textured, settings, qtbot, monkeypatch
):
    from tilesam_napari import _predict

    from tilesam.errors import TileSAMError

    cached_only = _predict.segment

    def embedding_fails(session, prompt, z, *, embed_missing=True):
        if embed_missing:
            raise TileSAMError("No space left on device")
        return cached_only(session, prompt, z, embed_missing=False)

    monkeypatch.setattr(_predict, "segment", embedding_fails)
    ann, viewer, box = _shown_in_part(widget, textured, settings, qtbot)
    notes = []
    monkeypatch.setattr("tilesam_napari._controller.show_info", notes.append)
    assert ann.commit() is None
    wait_idle(ann)
    assert any("not committed" in note for note in notes)
    with pytest.raises(TileSAMError, match="embedding the rest failed"):
        ann.commit()
    assert not viewer.layers[COMMITTED].data.any()


def test_an_object_reaching_tiles_not_embedded_shows_at_once_then_whole(
    widget, wait_idle, textured, settings, qtbot
):
    """The live mask never embeds in the GUI thread: where the prompt's tiles are cached
    the answer from the cache alone is shown at once, and a worker embeds the tiles the
    object goes on into and shows it whole."""
    settings = dataclasses.replace(settings, tile_size=128)
    ann, viewer = _start(widget, textured((300, 300)), settings)
    session = ann.session
    assert session.grid_shape == (1, 3, 3)
    session.compute_tiles([(0, 0, 0)])
    shown: list[tuple[np.ndarray, int]] = []  # the mask on screen, the tiles embedded then
    ann.on_change.append(lambda: shown.append((viewer.layers[CURRENT].data > 0, session.n_done)))
    box = (0, 0, 300, 300)  # fits in no tile: answered in every tile it overlaps
    viewer.layers[BOXES].add_rectangles(np.array([box[:2], box[2:]]))
    # First shown from the one cached tile alone, nothing embedded yet ...
    qtbot.waitUntil(lambda: bool(shown), timeout=20_000)
    first, embedded = shown[0]
    assert embedded == 1
    ys, xs = session.grid.tile_region(0, 0)
    outside = np.ones(first.shape, bool)
    outside[ys, xs] = False
    assert not first[outside].any()
    # ... then whole, from the worker that embedded the others.
    wait_idle(ann)
    assert session.n_done == session.n_tiles
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, session.segment(box=box).mask)
