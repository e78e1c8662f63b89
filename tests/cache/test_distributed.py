"""Embedding on dask.distributed (a real LocalCluster on loopback) gives the single-process
embeddings, bit for bit."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tifffile
import torch

from tilesam.cache.distributed import local_worker_threads
from tilesam.cache.store import EmbeddingStore
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.segment.session import Session

distributed = pytest.importorskip("distributed")


@contextlib.contextmanager
def _torch_threads(n: int):
    """Float results depend on the thread count: run the reference like the workers."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _assert_same_embeddings(path_a, path_b) -> None:
    a, b = EmbeddingStore.open(path_a, mode="r"), EmbeddingStore.open(path_b, mode="r")
    assert a.done_tiles() == b.done_tiles() and a.n_done == a.n_tiles
    for tile in a.done_tiles():
        np.testing.assert_array_equal(a.read_tile(*tile), b.read_tile(*tile))
        assert a.read_meta(*tile) == b.read_meta(*tile)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("dist") / "image.tif"
    image = np.random.default_rng(0).integers(100, 4000, (400, 500)).astype(np.uint16)
    tifffile.imwrite(path, image, tile=(128, 128), compression="zlib")
    return path


def test_scheduler_address_and_resume(image_path, model, tmp_path) -> None:
    # A model built in memory: the driver hands its weights to the workers as a file.
    single = Session(image_path, model, tmp_path / "single.zarr", halo=32)
    with _torch_threads(1):  # dask starts worker processes with OMP_NUM_THREADS=1
        assert single.embed(progress=False, batch_size=2) == 6
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        session = Session(image_path, model, tmp_path / "dask.zarr", halo=32)
        n = session.embed(progress=False, batch_size=2, scheduler=cluster.scheduler_address)
        assert n == 6
        _assert_same_embeddings(tmp_path / "single.zarr", tmp_path / "dask.zarr")
        # Resume: only the missing tiles are handed out.
        store = EmbeddingStore.open(tmp_path / "dask.zarr")
        store.discard_tile(0, 0, 1)
        store.discard_tile(0, 1, 2)
        assert session.embed(progress=False, scheduler=cluster.scheduler_address) == 2
    _assert_same_embeddings(tmp_path / "single.zarr", tmp_path / "dask.zarr")
    assert not list(tmp_path.glob(".tilesam-weights-*")), "the weights file is cleaned up"


def test_local_cluster_from_a_checkpoint(image_path, tmp_path) -> None:
    # A checkpoint path: each worker loads it itself, once.
    torch.manual_seed(0)
    checkpoint = tmp_path / "random.pt"
    torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), checkpoint)
    kwargs = {"tile_size": 320, "halo": 32}  # 2 x 2 tiles, each resized to the 1024 input
    single = Session(image_path, checkpoint, tmp_path / "single.zarr", **kwargs)
    with _torch_threads(local_worker_threads(2)):
        assert single.embed(progress=False, batch_size=1) == 4
    session = Session(image_path, checkpoint, tmp_path / "dask.zarr", **kwargs)
    assert session.embed(progress=False, batch_size=1, workers=2) == 4
    _assert_same_embeddings(tmp_path / "single.zarr", tmp_path / "dask.zarr")


def test_workers_embed_at_the_session_slice_scale(model, tmp_path) -> None:
    """The magnification travels to the workers: their tiles equal the in-process ones."""
    vol = np.random.default_rng(5).integers(0, 1000, (2, 64, 48)).astype(np.uint16)
    single = Session(vol, model, tmp_path / "single.zarr", slice_scale=2)
    with _torch_threads(1):  # the in-process worker below runs in this process
        assert single.embed(progress=False, batch_size=1) == 2
        session = Session(vol, model, tmp_path / "dask.zarr", slice_scale=2)
        with distributed.Client(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
        ) as client:
            assert session.embed(progress=False, batch_size=1, scheduler=client) == 2
    _assert_same_embeddings(tmp_path / "single.zarr", tmp_path / "dask.zarr")
    meta = EmbeddingStore.open(tmp_path / "dask.zarr").read_meta(0, 0, 0)
    assert meta["input_shape"] == (128, 96)  # 64 x 48 at 2x, not SAM's 4x
