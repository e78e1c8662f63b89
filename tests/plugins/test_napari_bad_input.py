"""Bad input gives a clear notification, never a traceback, a frozen viewer or lost labels."""

from __future__ import annotations

import numpy as np
from tilesam_napari._layers import COMMITTED, CURRENT, POINTS


def test_no_image_layer(widget, notes):
    assert widget.setup() is False
    assert any("No image layer" in n for n in notes())


def test_layer_of_wrong_dimensionality(widget, notes, textured):
    widget.viewer.add_image(textured((2, 3, 32, 32)), name="tczyx")
    assert widget.setup() is False
    assert any("TileSAM segments 2D images" in n for n in notes())


def test_checkpoint_that_fails_to_load(widget, notes, nuclei, tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    widget.viewer.add_image(nuclei)
    widget.form.checkpoint.value = bad
    assert widget.setup() is False
    assert any("broken.pth" in n for n in notes())


def test_failure_in_the_background_is_a_notification(widget, notes, nuclei, tmp_path, qtbot):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    widget.viewer.add_image(nuclei)
    widget.form.checkpoint.value = bad
    job = widget.compute_embeddings()  # opens the session in a worker: fails there
    qtbot.waitUntil(lambda: job.finished, timeout=30_000)
    assert any("broken.pth" in n for n in notes())
    assert widget.annotator.session is None and widget.embed_button.enabled


def test_default_tiny_model_without_weights_says_so(widget, notes, nuclei, monkeypatch):
    from tilesam.models import weights

    # An installation without the bundled weights (e.g. a stripped wheel) and an empty cache.
    monkeypatch.setattr(weights, "bundled_path", lambda entry: None)
    monkeypatch.setenv(weights.CACHE_ENV, "/nonexistent-tilesam-cache")
    widget.viewer.add_image(nuclei)
    widget.form.checkpoint.value = None
    assert widget.form.model.value == "tiny"
    assert widget.setup() is False
    assert any("'tiny'" in n and "not available" in n for n in notes())


def test_cache_made_for_another_image(widget, notes, nuclei, textured, tmp_path):
    cache = str(tmp_path / "cache.zarr")
    widget.form.cache.value = cache
    widget.viewer.add_image(nuclei, name="nuclei")
    assert widget.setup() is True
    other = widget.viewer.add_image(textured((256, 256)), name="other")
    widget.form.image.value = other
    assert widget.setup() is False
    assert any("cache" in n.lower() for n in notes())
    assert widget.annotator.image.name == "nuclei"  # the working session is kept


def test_prompt_outside_the_image_keeps_committed_objects(widget, notes, nuclei, wait_idle):
    widget.viewer.add_image(nuclei)
    assert widget.setup()
    ann, viewer = widget.annotator, widget.viewer
    ann.segment(points=[(120, 80)])
    ann.commit()
    before = viewer.layers[COMMITTED].data.copy()
    viewer.layers[POINTS].add([[300, 20]])  # below the 256 x 256 image
    wait_idle(ann)
    assert any("outside the image" in n for n in notes())
    np.testing.assert_array_equal(viewer.layers[COMMITTED].data, before)
    assert not viewer.layers[CURRENT].data.any()
    # The viewer still answers: the next good prompt is segmented.
    viewer.layers[POINTS].data = np.array([[120.0, 80.0]])
    wait_idle(ann)
    assert viewer.layers[CURRENT].data.any()


def test_commit_without_object_and_propagate_in_2d(widget, notes, nuclei):
    from tilesam_napari._notify import guarded

    widget.viewer.add_image(nuclei)
    assert widget.setup()
    guarded(widget.annotator.commit)
    assert widget.propagate() is None
    assert any("Nothing to commit" in n for n in notes())
