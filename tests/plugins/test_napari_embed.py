"""Embedding in a worker: progress, cancel that leaves a valid resumable cache, and the
on-disk committed labels of large images."""

from __future__ import annotations

import numpy as np
from tilesam_napari import _labels, _labels_store
from tilesam_napari._layers import COMMITTED

from tilesam.cache.store import EmbeddingStore


def test_cancel_leaves_a_resumable_cache(widget, qtbot, textured, tmp_path):
    cache = tmp_path / "emb.zarr"
    widget.viewer.add_image(textured((512, 768), np.uint8), name="img")
    widget.form.cache.value = cache
    widget.form.tile_size.value = 256
    widget.form.halo.value = 0
    job = widget.compute_embeddings()  # opens the session in the worker, then embeds
    qtbot.waitUntil(lambda: widget.progress.value >= 2, timeout=60_000)
    assert widget.annotator.session is not None  # attached while the worker embeds
    assert "left" in widget.status.text()  # time left, from the measured rate
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    store = EmbeddingStore.open(cache, mode="r")
    done = store.n_done
    assert 2 <= done < 6 and len(store.missing_tiles()) == 6 - done
    assert "tiles embedded" in widget.status.text()

    # A new session on the same cache resumes: only the missing tiles are computed.
    widget.annotator.session = None
    assert widget.setup()
    assert widget.annotator.session.n_done == done
    assert widget.annotator.embed() == 6 - done
    assert EmbeddingStore.open(cache, mode="r").missing_tiles() == []


def test_large_image_commits_to_zarr_on_disk(widget, textured, tmp_path, monkeypatch):
    monkeypatch.setattr(_labels_store, "LARGE_VOXELS", 100 * 100)
    widget.viewer.add_image(textured((300, 200), np.uint8), name="big")
    widget.form.cache.value = tmp_path / "big.zarr"
    assert widget.setup()
    ann = widget.annotator
    committed = widget.viewer.layers[COMMITTED].data
    assert _labels.is_on_disk(committed)
    ann.segment(points=[(150, 100)])
    assert ann.commit() == 1
    ann.segment(points=[(20, 20)])
    assert ann.commit() == 2
    import zarr

    on_disk = zarr.open_array(str(tmp_path / "big.labels.zarr"), mode="r")
    assert set(np.unique(on_disk[:])) <= {0, 1, 2} and on_disk[:].max() == 2
    ann.undo()
    assert on_disk[:].max() == 1
