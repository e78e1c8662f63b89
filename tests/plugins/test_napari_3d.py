"""Volumes: prompts on the shown slice segment that slice; Shift+S propagates the object
through the volume in a worker, with progress and cancel; commit keeps every slice."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tilesam_napari._layers import COMMITTED, CURRENT, POINTS

pytest.importorskip("tilesam.volumes.propagate")


@pytest.fixture
def volume_widget(widget, textured, settings):
    widget.viewer.add_image(textured((5, 96, 96), np.uint8), name="vol", scale=(3.0, 1.0, 1.0))
    widget.viewer.dims.set_point(0, 2 * 3.0)  # world z of slice 2
    widget.annotator.setup("vol", settings)
    return widget


def test_prompt_on_the_current_slice_segments_that_slice(volume_widget, wait_idle):
    ann, viewer = volume_widget.annotator, volume_widget.viewer
    viewer.layers[POINTS].add([[2, 50, 40]])
    wait_idle(ann)
    shown = viewer.layers[CURRENT].data
    assert shown[2].any() and not np.delete(shown, 2, axis=0).any()
    np.testing.assert_array_equal(shown[2] > 0, ann.session.segment(points=[(50, 40)], z=2).mask)


def test_shift_s_propagates_in_a_worker_and_commit_keeps_all_slices(volume_widget, qtbot):
    ann, viewer = volume_widget.annotator, volume_widget.viewer
    ann.segment(points=[(50, 40)])
    steps = []
    job = volume_widget.propagate()
    job.worker.yielded.connect(steps.append)
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    assert steps and steps[-1][0] == steps[-1][1]
    shown = viewer.layers[CURRENT].data > 0
    # The random test model's masks make the stop rules end early, so compare with the
    # core's own answer for the same seed rather than expecting many slices.
    import tilesam

    seed = np.zeros(shown.shape, np.uint8)
    seed[2] = ann.session.segment(points=[(50, 40)], z=2).mask
    expected = tilesam.propagate_mask(ann.session.source, mask=seed, session=ann.session)
    np.testing.assert_array_equal(shown, expected > 0)
    assert shown[2].any()
    assert ann.commit() == 1
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data > 0, shown)


def test_cancelled_propagation_keeps_the_current_object(volume_widget, qtbot, notes, monkeypatch):
    ann, viewer = volume_widget.annotator, volume_widget.viewer
    ann.segment(points=[(50, 40)])
    before = viewer.layers[CURRENT].data.copy()
    # Hold the first slice until the cancel is in: a small volume can otherwise be done
    # before cancel() lands, and the test would race the propagation.
    gate, segment = threading.Event(), ann.session.segment

    def held(*args, **kwargs):
        gate.wait(60)
        return segment(*args, **kwargs)

    monkeypatch.setattr(ann.session, "segment", held)
    job = volume_widget.propagate()
    job.cancel()
    gate.set()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    np.testing.assert_array_equal(viewer.layers[CURRENT].data, before)
    assert any("ancel" in n for n in notes())


def test_a_propagation_whose_consumer_stops_is_stopped(volume_widget, monkeypatch):
    # napari quits its workers when the viewer closes: the walk's own thread must end too.
    ann = volume_widget.annotator
    ann.segment(points=[(50, 40)])
    gate, calls, segment = threading.Event(), [], ann.session.segment

    def held(*args, **kwargs):  # the first slice passes, the second waits for the gate
        calls.append(1)
        if len(calls) > 1:
            gate.wait(60)
        return segment(*args, **kwargs)

    monkeypatch.setattr(ann.session, "segment", held)
    steps = ann.propagate_steps()
    done, total = next(steps)
    assert done < total
    threading.Timer(0.5, gate.set).start()
    steps.close()
    assert not any(t.name == "tilesam-propagate" for t in threading.enumerate())
    assert len(calls) < total


def test_volumes_get_the_core_volume_slice_scale(widget, textured, settings, tmp_path):
    """A volume's session embeds at the core's volume slice scale (as ``tilesam embed``
    does), in the annotator's embedding loop too, so its cache serves
    `tilesam.propagate_mask`; a 2D image keeps SAM's convention."""
    import dataclasses

    import tilesam
    from tilesam.cache.scale import DEFAULT_SLICE_SCALE
    from tilesam.cache.store import EmbeddingStore

    viewer, ann = widget.viewer, widget.annotator
    viewer.add_image(textured((2, 96, 96), np.uint8), name="vol")
    viewer.add_image(textured((96, 96), np.uint8), name="img")
    cache = tmp_path / "vol.zarr"
    session = ann.setup("vol", dataclasses.replace(settings, cache=str(cache)))
    assert session.slice_scale == DEFAULT_SLICE_SCALE
    assert ann.embed() == 2
    store = EmbeddingStore.open(cache, mode="r")
    assert store.signature["tiling"]["slice_scale"] == DEFAULT_SLICE_SCALE
    assert store.read_meta(1, 0, 0)["input_shape"] == (288, 288)  # 96 pixels at 3x
    seed = np.zeros((2, 96, 96), np.uint8)
    seed[0, 30:60, 30:60] = 1
    # The core's default opens the plugin's cache (another scale would be refused).
    tilesam.propagate_mask(session.source, session.model, mask=seed, cache=cache)
    plain = ann.setup("img", settings)
    assert plain.slice_scale is None and "slice_scale" not in plain.signature["tiling"]


def test_a_propagation_says_where_and_why_each_walk_stopped(volume_widget, qtbot, notes):
    ann = volume_widget.annotator
    ann.segment(points=[(50, 40)])
    labels = ann.propagate()
    assert labels.shape == (5, 96, 96)
    said = [n for n in notes() if n.startswith("TileSAM propagation:")]
    assert len(said) == 1 and "towards lower slices" in said[0]
    assert "towards higher slices" in said[0]


def test_a_colour_video_opens_lazily_and_shift_s_tracks_through_time(
    widget, settings, qtbot, tmp_path
):
    """A dropped .mp4 opens through TileSAM's reader as lazy RGB frames (napari's own
    reader would decode it whole); the annotator sees time as its slice axis and Shift+S
    tracks the object through the frames, as the core does for the same seed."""
    import imageio_ffmpeg
    from tilesam_napari._io import SourceArray

    import tilesam

    yy, xx = np.mgrid[:64, :80]
    path = str(tmp_path / "red.mp4")
    writer = imageio_ffmpeg.write_frames(path, (80, 64), fps=10, ffmpeg_log_level="error")
    writer.send(None)
    for t in range(6):
        frame = np.empty((64, 80, 3), np.uint8)
        frame[...] = (40, 90, 50)
        frame[(yy - 32) ** 2 + (xx - 16 - 4 * t) ** 2 <= 100] = (200, 40, 40)
        writer.send(frame.tobytes())
    writer.close()

    viewer, ann = widget.viewer, widget.annotator
    (layer,) = viewer.open(path, plugin=None)  # the preference TileSAM's activation set
    assert layer.rgb and layer.data.shape == (6, 64, 80, 3)
    assert isinstance(layer.data, SourceArray) and layer.data.source.n_decoded < 6
    viewer.dims.set_point(0, 0)
    ann.setup(layer.name, settings)
    assert ann.session.source.axes == "ZYXC"
    ann.segment(points=[(32, 16)])
    job = widget.propagate()
    with qtbot.waitSignal(job.worker.finished, timeout=120_000):
        pass
    seed = np.zeros((6, 64, 80), np.uint8)
    seed[0] = ann.session.segment(points=[(32, 16)], z=0).mask
    expected = tilesam.propagate_mask(ann.session.source, mask=seed, session=ann.session)
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, expected > 0)
