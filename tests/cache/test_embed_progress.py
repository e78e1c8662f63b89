"""One embedding loop with progress and cancel: what the command line, napari and dask use."""

from __future__ import annotations

import threading

import tilesam
from tilesam.cache.store import EmbeddingStore
from tilesam.samples import load_sample


def test_embed_reports_each_batch_and_stops_when_cancelled_keeping_what_is_done(tmp_path):
    image = load_sample("nuclei")[0]
    cache = tmp_path / "c.zarr"
    session = tilesam.Session(image, cache=cache, tile_size=96, halo=8)
    assert session.n_tiles == 9
    cancel, heard = threading.Event(), []

    def callback(done: int, total: int) -> None:
        heard.append((done, total))
        if done >= 4:
            cancel.set()  # as the napari plugin's Cancel button does

    done = session.embed(progress=False, batch_size=2, callback=callback, cancel=cancel)
    assert done == 4 and heard == [(2, 9), (4, 9)]
    assert len(EmbeddingStore.open(cache, mode="r").done_tiles()) == 4  # kept: resumable
    rest = tilesam.Session(image, cache=cache).embed(progress=False, batch_size=2)
    assert rest == 5 and EmbeddingStore.open(cache, mode="r").missing_tiles() == []
