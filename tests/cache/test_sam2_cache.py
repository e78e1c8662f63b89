"""SAM 2's high-resolution feature maps in the embedding stores (format 3): kept as float16,
read back bit-exact, checksummed like the embeddings, refused where they do not belong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tilesam.cache.high_res import array_name
from tilesam.cache.memory import MemoryStore
from tilesam.cache.store import EmbeddingStore
from tilesam.cache.store_layout import chunk_file
from tilesam.errors import TileSAMError

GRID = (1, 2, 2)
EMB = (8, 4, 4)
HIGH_RES = ((4, 16, 16), (6, 8, 8))
META = {"tile_shape": (100, 90), "input_shape": (64, 58)}


def _maps(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 3, shape).astype(np.float32) for shape in HIGH_RES]


def _create(path: Path, high_res=HIGH_RES) -> EmbeddingStore:
    return EmbeddingStore.create(
        path, signature={"model": "m"}, grid_shape=GRID, embedding_shape=EMB,
        high_res_shapes=high_res,
    )  # fmt: skip


def test_maps_round_trip_bit_exact_after_float16(tmp_path: Path) -> None:
    store = _create(tmp_path / "c.zarr")
    assert store.format_version == 3 and store.high_res_shapes == HIGH_RES
    maps = _maps(0)
    store.write_tile(0, 1, 0, np.ones(EMB), META, maps)
    reopened = EmbeddingStore.open(tmp_path / "c.zarr", signature={"model": "m"})
    for read in (store.read_high_res(0, 1, 0), reopened.read_high_res(0, 1, 0)):
        assert [r.dtype for r in read] == [np.float16, np.float16]
        for got, want in zip(read, maps):
            assert np.array_equal(got, want.astype(np.float16))
    assert reopened.verify().ok and reopened.info()["high_res_shapes"] == HIGH_RES


def test_memory_store_keeps_the_same_float16_maps() -> None:
    store = MemoryStore(GRID, EMB, HIGH_RES)
    maps = _maps(1)
    store.write_tile(0, 0, 1, np.ones(EMB), META, maps)
    for got, want in zip(store.read_high_res(0, 0, 1), maps):
        assert np.array_equal(got, want.astype(np.float16))
    with pytest.raises(TileSAMError, match="high-resolution maps"):
        store.write_tile(0, 0, 0, np.ones(EMB), META, maps[:1])


def test_sam1_store_has_no_maps_and_stays_format_2(tmp_path: Path) -> None:
    store = _create(tmp_path / "c.zarr", high_res=())
    assert store.format_version == 2 and store.high_res_shapes == ()
    store.write_tile(0, 0, 0, np.ones(EMB), META)
    assert store.read_high_res(0, 0, 0) == ()
    with pytest.raises(TileSAMError, match="keeps no high-resolution features"):
        store.write_tile(0, 0, 1, np.ones(EMB), META, _maps(0))


def test_missing_wrong_or_overflowing_maps_are_refused_before_writing(tmp_path: Path) -> None:
    store = _create(tmp_path / "c.zarr")
    with pytest.raises(TileSAMError, match="2 high-resolution feature maps"):
        store.write_tile(0, 0, 0, np.ones(EMB), META)
    with pytest.raises(TileSAMError, match="has shape"):
        store.write_tile(0, 0, 0, np.ones(EMB), META, [np.ones((4, 8, 8)), np.ones((6, 8, 8))])
    big = _maps(0)
    big[1][0, 0, 0] = 1e6
    with pytest.raises(TileSAMError, match="float16's range"):
        store.write_tile(0, 0, 0, np.ones(EMB), META, big)
    assert store.missing_tiles() == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]


@pytest.mark.parametrize("damage", ["flip", "delete", "swap"])
def test_damaged_maps_are_one_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.zarr"
    store = _create(path)
    store.write_tile(0, 0, 0, np.ones(EMB), META, _maps(0))
    store.write_tile(0, 0, 1, np.ones(EMB), META, _maps(1))
    chunk = chunk_file(path, array_name(1), (0, 0, 0), 0, 0, 0)
    if damage == "flip":
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 1
        chunk.write_bytes(bytes(data))
    elif damage == "delete":
        chunk.unlink()
    else:  # another tile's chunk copied over this one's
        chunk.write_bytes(chunk_file(path, array_name(1), (0, 0, 1), 0, 0, 0).read_bytes())
    with pytest.raises(TileSAMError, match=r"Tile \(0, 0, 0\) .* is damaged: its high-resolution"):
        store.read_high_res(0, 0, 0)
    check = store.verify(repair=True)
    assert list(check.damaged) == [(0, 0, 0)] and not store.is_done(0, 0, 0)
    assert store.tile_problem(0, 0, 1) is None


def test_sam1_and_sam2_stores_do_not_open_as_each_other(tmp_path: Path) -> None:
    _create(tmp_path / "sam2.zarr")
    _create(tmp_path / "sam1.zarr", high_res=())
    options = {"signature": {"model": "m"}, "grid_shape": GRID, "embedding_shape": EMB}
    with pytest.raises(TileSAMError, match="high-resolution maps"):
        EmbeddingStore.open_or_create(tmp_path / "sam2.zarr", **options)
    with pytest.raises(TileSAMError, match="high-resolution maps"):
        EmbeddingStore.open_or_create(tmp_path / "sam1.zarr", **options, high_res_shapes=HIGH_RES)
