"""What the predictor reads from a cache is checked (issue 23): a deleted, damaged, edited or
swapped chunk, an edited signature, a damaged ``tile_shape`` are each one `TileSAMError`
that names the tile and the fix, never a silently wrong mask or a raw traceback; `verify`
finds them all and repairs by discarding; caches of format 1 still open and work."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from tilesam.cache.store import EmbeddingStore
from tilesam.cache.store_layout import chunk_file
from tilesam.cache.tile_digest import embedding_digest, read_raw
from tilesam.errors import TileSAMError
from tilesam.samples import load_sample
from tilesam.segment.session import Session

TILING = {"tile_size": 96, "halo": 8}  # nuclei (256 x 256) in 3 x 3 tiles of 96 x 96
POINT = (128, 128)  # in tile (0, 1, 1)
TILE = (0, 1, 1)


@pytest.fixture(scope="module")
def made(tmp_path_factory, model):
    """A complete cache of the nuclei sample, and the mask a click gives on it."""
    folder = tmp_path_factory.mktemp("integrity")
    image = load_sample("nuclei")[0]
    session = Session(image, model, folder / "c.zarr", **TILING)
    assert session.embed(progress=False, batch_size=1) == 9  # tiles alone: bit for bit
    return image, folder / "c.zarr", session.segment(points=[POINT]).mask


@pytest.fixture
def cache(made, tmp_path):
    """A fresh copy of the complete cache, to attack."""
    copy = tmp_path / "c.zarr"
    shutil.copytree(made[1], copy)
    return copy


def _chunk(cache, array: str, tile=TILE):
    trailing = {"embeddings": (0, 0, 0), "done": ()}.get(array, (0,))
    return chunk_file(cache, array, tile, *trailing)


def _click(made, model, cache):
    return Session(made[0], model, cache).segment(points=[POINT]).mask


def _refused(made, model, cache, what: str) -> None:
    """A click in the attacked tile and a read of it are both refused, naming the tile,
    what is wrong and the fix."""
    fix = rf"Tile \(0, 1, 1\) of embedding cache .* is damaged: .*{what}.*tilesam check"
    with pytest.raises(TileSAMError, match=fix):
        _click(made, model, cache)
    store = EmbeddingStore.open(cache, mode="r")
    with pytest.raises(TileSAMError, match=fix):
        store.read_meta(*TILE)
        store.read_tile(*TILE)
    check = store.verify()
    assert not check.ok and list(check.damaged) == [TILE]


def test_the_copy_is_intact(made, model, cache) -> None:
    np.testing.assert_array_equal(_click(made, model, cache), made[2])
    check = EmbeddingStore.open(cache, mode="r").verify()
    assert check.ok and check.verified and check.n_done == 9 and check.decoder == "ok"


def test_a_deleted_embedding_chunk_is_refused_not_read_as_zeros(made, model, cache) -> None:
    _chunk(cache, "embeddings").unlink()  # its done mark stays
    _refused(made, model, cache, "embedding chunk is missing")


def test_another_tiles_chunk_copied_in_is_refused(made, model, cache) -> None:
    shutil.copyfile(_chunk(cache, "embeddings", (0, 0, 0)), _chunk(cache, "embeddings"))
    _refused(made, model, cache, "does not match its checksum")


def test_the_same_tiles_chunk_from_another_cache_is_refused(made, model, cache, tmp_path):
    other = Session(made[0][::-1].copy(), model, tmp_path / "other.zarr", **TILING)
    other.compute_tiles([TILE])
    shutil.copyfile(_chunk(tmp_path / "other.zarr", "embeddings"), _chunk(cache, "embeddings"))
    _refused(made, model, cache, "does not match its checksum")


def test_a_damaged_embedding_chunk_is_refused(made, model, cache) -> None:
    chunk = _chunk(cache, "embeddings")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    _refused(made, model, cache, "cannot be decoded")


@pytest.mark.parametrize("name", ["tile_shape", "input_shape"])
def test_edited_tile_metadata_is_refused(made, model, cache, name) -> None:
    # Plausible sizes, of the right type and length: only the checksum tells.
    _chunk(cache, name).write_bytes(np.array([96, 80], "<i4").tobytes())
    _refused(made, model, cache, f"metadata .*{name}.* does not match its checksum")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01\x02\x03", b"\0" * 8, np.array([-5, 2**31 - 1], "<i4").tobytes(), b"\xff" * 64],
    ids=["empty", "truncated", "zeros", "absurd", "garbage"],
)
def test_a_damaged_tile_shape_chunk_is_one_clear_error(made, model, cache, data) -> None:
    _chunk(cache, "tile_shape").write_bytes(data)
    _refused(made, model, cache, "tile_shape")  # never ValueError, ZeroDivisionError, ...


def test_a_deleted_tile_shape_or_checksum_chunk_is_refused(made, model, cache) -> None:
    _chunk(cache, "tile_shape").unlink()
    _refused(made, model, cache, "tile_shape chunk is missing")
    shutil.copytree(made[1], cache, dirs_exist_ok=True)
    _chunk(cache, "checksum").unlink()
    _refused(made, model, cache, "checksum chunk is missing")


@pytest.mark.parametrize(
    "edit",
    [
        lambda attrs: attrs["signature"]["normalisation"]["range"].__setitem__(1, 9999.0),
        lambda attrs: attrs["signature"]["tiling"].__setitem__("halo", 16),
        lambda attrs: attrs["tilesam"].__setitem__("store_id", "0" * 32),
    ],
    ids=["normalisation.range", "tiling.halo", "store_id"],
)
def test_an_edited_signature_or_header_is_refused_as_damaged(made, model, cache, edit) -> None:
    meta = json.loads((cache / "zarr.json").read_text())
    edit(meta["attributes"])
    (cache / "zarr.json").write_text(json.dumps(meta))
    fix = r"is damaged: its settings in zarr\.json .* changed after it was made.*--overwrite"
    with pytest.raises(TileSAMError, match=fix):
        EmbeddingStore.open(cache, mode="r")
    with pytest.raises(TileSAMError, match=fix):
        Session(made[0], model, cache)
    # The fix it names works: recomputed, and the click is the same again.
    fresh = Session(made[0], model, cache, overwrite=True, **TILING)
    assert fresh.embed(progress=False) == 9
    np.testing.assert_array_equal(fresh.segment(points=[POINT]).mask, made[2])


def test_verify_finds_every_damaged_tile_and_repair_lets_embed_recompute_them(
    made, model, cache
) -> None:
    _chunk(cache, "embeddings", (0, 0, 2)).unlink()
    shutil.copyfile(_chunk(cache, "embeddings", (0, 2, 0)), _chunk(cache, "embeddings"))
    _chunk(cache, "input_shape", (0, 2, 2)).write_bytes(b"\0" * 8)
    store = EmbeddingStore.open(cache)
    check = store.verify()
    assert sorted(check.damaged) == [(0, 0, 2), TILE, (0, 2, 2)] and not check.ok
    assert "3 damaged tile(s)" in check.summary() and "--repair" in check.summary()
    assert store.n_done == 9  # verify alone changes nothing
    repaired = store.verify(repair=True)
    assert repaired.ok and repaired.repaired and store.n_done == 6
    assert sorted(store.missing_tiles()) == sorted(check.damaged)
    session = Session(made[0], model, cache)
    assert session.embed(progress=False, batch_size=1) == 3
    assert store.verify().ok
    np.testing.assert_array_equal(session.segment(points=[POINT]).mask, made[2])
    original = EmbeddingStore.open(made[1], mode="r")
    for tile in check.damaged:
        np.testing.assert_array_equal(store.read_tile(*tile), original.read_tile(*tile))


def _as_format_1(cache) -> None:
    """What TileSAM wrote before checksums: no checksum array, no store id, no seal."""
    shutil.rmtree(cache / "checksum")
    shutil.rmtree(cache / "claims")
    meta = json.loads((cache / "zarr.json").read_text())
    head = meta["attributes"]["tilesam"]
    for key in ("store_id", "checksum"):
        del head[key]
    head["format_version"] = 1
    (cache / "zarr.json").write_text(json.dumps(meta))


def test_caches_of_format_1_still_open_and_work_unverified(made, model, cache) -> None:
    _as_format_1(cache)
    store = EmbeddingStore.open(cache)
    assert store.format_version == 1 and not store.verified
    np.testing.assert_array_equal(_click(made, model, cache), made[2])
    check = store.verify()
    assert check.ok and not check.verified and "format 1" in check.summary()
    # Resuming writes format-1 tiles (no checksum array appears).
    store.discard_tile(0, 2, 2)
    assert Session(made[0], model, cache).embed(progress=False) == 1
    assert not (cache / "checksum").exists() and store.verify().ok
    # What can be checked without checksums still is: a chunk deleted, a size broken.
    _chunk(cache, "embeddings").unlink()
    _refused(made, model, cache, "embedding chunk is missing")
    shutil.rmtree(cache)
    shutil.copytree(made[1], cache)
    _as_format_1(cache)
    _chunk(cache, "tile_shape").write_bytes(b"\0" * 8)
    _refused(made, model, cache, "tile_shape")


def test_checking_a_tile_costs_well_under_a_millisecond(cache) -> None:
    # `tiny`'s embedding: 256 x 64 x 64 float16 (2 MiB); the check is a 16-byte file read
    # and one XXH3 over the bytes already decoded for the click.
    emb = np.random.default_rng(0).normal(size=(256, 64, 64)).astype(np.float16)
    file = _chunk(cache, "checksum")
    times = []
    for _ in range(50):
        start = time.perf_counter()
        read_raw(file, "<u8", 2, "checksum")
        embedding_digest("0123456789abcdef", TILE, emb)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 1e-3, f"{np.median(times) * 1e3:.3f} ms"
