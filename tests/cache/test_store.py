"""EmbeddingStore on real zarr folders: round trips, resume after a kill, concurrent
writers, signatures; and content_signature."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from tilesam.cache.store import EmbeddingStore
from tilesam.errors import TileSAMError
from tilesam.io import ArraySource, content_signature, open_image

SIG = {"model": "vit_b", "weights_sha256": "ab12", "tile_size": 64, "halo": 8,
       "normalisation": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}  # fmt: skip
GRID = (2, 3, 4)
EMB = (8, 4, 4)
META = {"tile_shape": (64, 50), "input_shape": (64, 50)}


def _emb(z: int, ty: int, tx: int) -> np.ndarray:
    base = np.arange(np.prod(EMB), dtype=np.float32).reshape(EMB) / 16
    return base + 100 * z + 10 * ty + tx  # distinct per tile


def _f16(a: np.ndarray) -> np.ndarray:
    """What a float16 round trip gives."""
    return a.astype(np.float16).astype(np.float32)


def _create(path: Path, **kw) -> EmbeddingStore:
    return EmbeddingStore.create(path, signature=SIG, grid_shape=GRID, embedding_shape=EMB, **kw)


def test_roundtrip_and_progress(tmp_path) -> None:
    store = _create(tmp_path / "c.zarr")
    assert (store.n_tiles, store.n_done, len(store.missing_tiles())) == (24, 0, 24)
    store.write_tile(1, 2, 3, _emb(1, 2, 3), META)
    store.write_tile(0, 0, 1, _emb(0, 0, 1), {"tile_shape": (64, 64), "input_shape": (32, 32)})
    out = store.read_tile(1, 2, 3)
    assert out.dtype == np.float16 and out.shape == EMB
    np.testing.assert_array_equal(out, _f16(_emb(1, 2, 3)))
    assert store.read_meta(0, 0, 1) == {"tile_shape": (64, 64), "input_shape": (32, 32)}
    assert store.is_done(1, 2, 3) and not store.is_done(1, 2, 2)
    assert store.done_tiles() == [(0, 0, 1), (1, 2, 3)]
    assert store.n_done == 2 and (1, 2, 3) not in store.missing_tiles()
    with pytest.raises(TileSAMError, match=r"no embedding yet.*2/24 tiles done"):
        store.read_tile(0, 0, 0)
    info = store.info()
    assert info["n_done"] == 2 and not info["complete"] and info["signature"] == SIG
    assert info["grid_shape"] == GRID and info["bytes_on_disk"] > 0


def test_on_disk_layout_is_one_chunk_per_tile(tmp_path) -> None:
    store = _create(tmp_path / "c.zarr")
    store.write_tile(1, 0, 2, _emb(1, 0, 2), META)
    group = zarr.open_group(tmp_path / "c.zarr", mode="r")
    assert group["embeddings"].chunks == (1, 1, 1, *EMB)
    assert group["embeddings"].dtype == np.float16
    assert group["done"].chunks == (1, 1, 1)
    for name in ("embeddings", "done", "tile_shape", "input_shape"):
        chunks = sorted(
            p.relative_to(tmp_path / "c.zarr" / name)
            for p in (tmp_path / "c.zarr" / name).rglob("*")
            if p.is_file() and p.name != "zarr.json"
        )
        assert [str(c) for c in chunks] == [
            str(Path("c/1/0/2").joinpath(*["0"] * (len(group[name].shape) - 3)))
        ]


def test_data_without_done_marker_is_not_done(tmp_path) -> None:
    # What a process killed between writing the embedding and the marker leaves behind.
    store = _create(tmp_path / "c.zarr")
    zarr.open_array(tmp_path / "c.zarr" / "embeddings", mode="r+")[0, 1, 1] = _emb(0, 1, 1)
    store = EmbeddingStore.open(tmp_path / "c.zarr", signature=SIG)
    assert not store.is_done(0, 1, 1) and (0, 1, 1) in store.missing_tiles()
    with pytest.raises(TileSAMError, match="no embedding yet"):
        store.read_tile(0, 1, 1)


_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_store import META, SIG, _emb
    from tilesam.cache.store import EmbeddingStore

    store = EmbeddingStore.open({path!r}, signature=SIG)
    for z, ty, tx in list(np.ndindex(*store.grid_shape))[{start}::2]:
        store.write_tile(z, ty, tx, _emb(z, ty, tx), META)
        time.sleep({pause})
    print("finished", flush=True)
    time.sleep({linger})
    """
)


def _writer(path: Path, start: int, pause: float, linger: float) -> subprocess.Popen:
    tests = str(Path(__file__).parent)
    code = _WRITER.format(tests=tests, path=str(path), start=start, pause=pause, linger=linger)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_concurrent_writers_then_kill_and_resume(tmp_path) -> None:
    # Two processes fill disjoint tiles of one store at the same time; the slow one is
    # killed (SIGKILL: no cleanup, possibly mid-tile) once the fast one has finished.
    path = tmp_path / "c.zarr"
    grid = (4, 10, 10)
    EmbeddingStore.create(path, signature=SIG, grid_shape=grid, embedding_shape=EMB)
    slow = _writer(path, start=0, pause=0.05, linger=60)
    fast = _writer(path, start=1, pause=0.0, linger=0)
    assert fast.communicate(timeout=120)[0].strip() == "finished"
    store = EmbeddingStore.open(path, mode="r")
    deadline = time.monotonic() + 60
    while store.n_done < 200 + 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    assert slow.returncode == -signal.SIGKILL

    store = EmbeddingStore.open(path, signature=SIG)
    done, missing = store.done_tiles(), store.missing_tiles()
    everything = sorted(np.ndindex(*grid))
    assert set(everything[1::2]) <= set(done)  # all of the fast writer's tiles
    assert len(done) >= 203 and sorted(done + missing) == everything
    for t in done:  # every tile marked done holds its complete data
        np.testing.assert_array_equal(store.read_tile(*t), _f16(_emb(*t)))
    assert store.read_meta(*done[0]) == {k: tuple(v) for k, v in META.items()}
    # Resume: only the missing tiles are computed.
    for t in missing:
        store.write_tile(*t, _emb(*t), META)
    assert store.missing_tiles() == [] and store.info()["complete"]


def test_signature_mismatch_lists_fields(tmp_path) -> None:
    _create(tmp_path / "c.zarr")
    other = {**SIG, "tile_size": 128, "normalisation": {"mean": [0.5] * 3, "std": [0.3] * 3}}
    with pytest.raises(TileSAMError) as err:
        EmbeddingStore.open(tmp_path / "c.zarr", signature=other)
    msg = str(err.value)
    assert "tile_size: cache=64, now=128" in msg and "normalisation.std" in msg
    assert "model" not in msg.split("(")[1] and "overwrite" in msg and "another cache path" in msg
    # Tuples, numpy numbers and lists are the same JSON value: no false mismatch.
    same = {
        **SIG,
        "tile_size": np.int64(64),
        "normalisation": {"mean": (0.5, 0.5, 0.5), "std": np.full(3, 0.2)},
    }
    EmbeddingStore.open(tmp_path / "c.zarr", signature=same)
    with pytest.raises(TileSAMError, match=r"extra: cache='<missing>', now=1"):
        EmbeddingStore.open(tmp_path / "c.zarr", signature={**SIG, "extra": 1})


def test_not_a_store_and_missing_path(tmp_path) -> None:
    with pytest.raises(TileSAMError, match="No embedding cache"):
        EmbeddingStore.open(tmp_path / "nothing.zarr")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(TileSAMError, match="not a TileSAM embedding cache"):
        EmbeddingStore.open(folder)
    # overwrite never deletes a folder that is not ours
    with pytest.raises(TileSAMError, match="refusing to overwrite"):
        _create(folder, overwrite=True)
    with pytest.raises(TileSAMError, match="refusing to overwrite"):
        EmbeddingStore.open_or_create(
            folder, signature=SIG, grid_shape=GRID, embedding_shape=EMB, overwrite=True
        )
    assert (folder / "holiday.jpg").read_bytes() == b"precious"
    zarr.open_group(tmp_path / "plain.zarr", mode="w")  # a zarr group, but not a cache
    with pytest.raises(TileSAMError, match="not a TileSAM embedding cache"):
        EmbeddingStore.open(tmp_path / "plain.zarr")


def test_damaged_array_metadata_is_reported(tmp_path) -> None:
    path = tmp_path / "c.zarr"
    _create(path)
    (path / "embeddings" / "zarr.json").write_text("{not json")
    with pytest.raises(TileSAMError, match=r"c\.zarr' is damaged: an array's metadata"):
        EmbeddingStore.open(path, mode="r")


def test_open_or_create(tmp_path) -> None:
    path = tmp_path / "c.zarr"
    kw = {"signature": SIG, "grid_shape": GRID, "embedding_shape": EMB}
    store = EmbeddingStore.open_or_create(path, **kw)
    store.write_tile(0, 0, 0, _emb(0, 0, 0), META)
    assert EmbeddingStore.open_or_create(path, **kw).n_done == 1  # reused, tiles kept
    with pytest.raises(TileSAMError, match="already exists"):
        _create(path)
    with pytest.raises(TileSAMError, match="different inputs"):
        EmbeddingStore.open_or_create(path, **{**kw, "signature": {**SIG, "halo": 0}})
    with pytest.raises(TileSAMError, match="has grid"):
        EmbeddingStore.open_or_create(path, **{**kw, "grid_shape": (1, 3, 4)})
    fresh = EmbeddingStore.open_or_create(
        path, **{**kw, "signature": {**SIG, "halo": 0}}, overwrite=True
    )
    assert fresh.n_done == 0 and fresh.signature["halo"] == 0
    (tmp_path / "empty").mkdir()
    assert EmbeddingStore.open_or_create(tmp_path / "empty", **kw).n_tiles == 24


def test_write_validation_and_read_only(tmp_path) -> None:
    store = _create(tmp_path / "c.zarr")
    with pytest.raises(TileSAMError, match="has shape"):
        store.write_tile(0, 0, 0, np.zeros((8, 4, 5)), META)
    with pytest.raises(TileSAMError, match="NaN/inf"):
        store.write_tile(0, 0, 0, np.full(EMB, 1e6), META)
    with pytest.raises(TileSAMError, match="exactly the keys"):
        store.write_tile(0, 0, 0, _emb(0, 0, 0), {"tile_shape": (1, 1)})
    with pytest.raises(TileSAMError, match="outside the cache's grid"):
        store.write_tile(2, 0, 0, _emb(0, 0, 0), META)
    with pytest.raises(TileSAMError, match="JSON"):
        EmbeddingStore.create(
            tmp_path / "d.zarr", signature={"f": object()}, grid_shape=GRID, embedding_shape=EMB
        )
    assert store.n_done == 0
    store.write_tile(0, 0, 0, _emb(0, 0, 0), META)
    ro = EmbeddingStore.open(tmp_path / "c.zarr", mode="r")
    with pytest.raises(TileSAMError, match="read-only"):
        ro.write_tile(0, 0, 1, _emb(0, 0, 1), META)
    store.discard_tile(0, 0, 0)
    assert store.n_done == 0 and not ro.is_done(0, 0, 0)


def test_damaged_tile_is_reported(tmp_path) -> None:
    store = _create(tmp_path / "c.zarr")
    store.write_tile(0, 0, 0, _emb(0, 0, 0), META)
    chunk = tmp_path / "c.zarr" / "embeddings" / "c" / "0" / "0" / "0" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(TileSAMError, match=r"damaged.*discard_tile"):
        store.read_tile(0, 0, 0)


def test_a_store_with_the_older_zstd_chunks_still_reads(tmp_path, monkeypatch) -> None:
    # Stores made before the LZ4 chunks compress with zstd alone (with its checksum).
    older = [zarr.codecs.ZstdCodec(level=3, checksum=True)]
    monkeypatch.setattr("tilesam.cache.store_layout.embedding_codecs", lambda: older)
    store = _create(tmp_path / "old.zarr")
    store.write_tile(0, 1, 2, _emb(0, 1, 2), META)
    monkeypatch.undo()
    reopened = EmbeddingStore.open(tmp_path / "old.zarr", signature=SIG)
    np.testing.assert_array_equal(reopened.read_tile(0, 1, 2), _f16(_emb(0, 1, 2)))
    reopened.write_tile(1, 0, 0, _emb(1, 0, 0), META)  # resuming keeps the store's codec
    np.testing.assert_array_equal(reopened.read_tile(1, 0, 0), _f16(_emb(1, 0, 0)))
    codecs = zarr.open_array(tmp_path / "old.zarr" / "embeddings").metadata.codecs
    assert [type(c).__name__ for c in codecs] == ["BytesCodec", "ZstdCodec"]
    fresh = zarr.open_array(_create(tmp_path / "new.zarr").path / "embeddings").metadata.codecs
    assert [type(c).__name__ for c in fresh] == ["BytesCodec", "BloscCodec", "Crc32cCodec"]


# -- content signature -------------------------------------------------------------------------
def test_content_signature(tmp_path) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 60000, size=(3, 500, 700), dtype=np.uint16)
    sig = content_signature(ArraySource(img))
    assert sig.startswith("sample-v1:") and sig == content_signature(ArraySource(img.copy()))
    # Same pixels in another container: same signature.
    tiff = tmp_path / "v.tif"
    tifffile.imwrite(tiff, img, tile=(128, 128), compression="zlib", photometric="minisblack")
    assert content_signature(open_image(tiff)) == sig
    # Changes it catches: content, flips, dtype, shape, axes.
    assert content_signature(ArraySource(img[:, ::-1])) != sig
    assert content_signature(ArraySource(img.astype(np.int32))) != sig
    assert content_signature(ArraySource(img[:, :-1])) != sig
    assert content_signature(ArraySource(img + 1)) != sig
    assert content_signature(ArraySource(img, axes="YXC")) != sig
    # Tiny images are fine too.
    assert content_signature(ArraySource(np.zeros((3, 5), np.uint8))).startswith("sample-v1:")
