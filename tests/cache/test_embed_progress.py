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


def test_the_default_batch_is_four_tiles_for_a_small_encoder_and_one_for_vit_b():
    """Without `batch_size` a small encoder (`tiny`) takes 4 tiles a call; ViT-B and larger
    take one (a batch of 4 ViT-B inputs holds gigabytes more activations, for no speed on a
    CPU)."""
    from types import SimpleNamespace

    from tilesam.cache.embed import default_batch_size
    from tilesam.models.registry import ARCHITECTURES, build_sam

    heard: list[tuple[int, int]] = []
    session = tilesam.Session(load_sample("nuclei")[0], tile_size=96, halo=8)
    session.embed(progress=False, callback=lambda done, total: heard.append((done, total)))
    assert heard == [(4, 9), (8, 9), (9, 9)]
    vit_b = SimpleNamespace(sam=build_sam(ARCHITECTURES["vit_b"]))
    assert default_batch_size(vit_b) == 1
