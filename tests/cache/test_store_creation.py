"""Creating a cache when processes die or race (issue 23): a creation is atomic, what an
interrupted one leaves never blocks the next run, and two creators of one cache share it.
Kills and races are real processes (``kill -9``; two interpreters started together)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from tilesam.cache.store import EmbeddingStore
from tilesam.errors import TileSAMError

SIG = {"model": "vit_b", "tile_size": 64, "normalisation": {"range": [0.0, 255.0]}}
GRID = (1, 2, 3)
EMB = (8, 4, 4)
META = {"tile_shape": (64, 50), "input_shape": (64, 50)}
KW = {"signature": SIG, "grid_shape": GRID, "embedding_shape": EMB}


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == word:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"process ended before '{word}': {proc.stderr.read()}")
    raise AssertionError(f"no '{word}' in {timeout} s")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- a kill during creation ---------------------------------------------------------------------
_CREATE_SLOWLY = """
import time
import tilesam.cache.store_opening as opening
from tilesam.cache.store import EmbeddingStore

real = opening.new_group

def slow(path, grid, emb):  # the arrays are made; the attributes are not written yet
    group = real(path, grid, emb)
    print("building", flush=True)
    time.sleep(120)
    return group

opening.new_group = slow
EmbeddingStore.create({path!r}, signature={sig!r}, grid_shape={grid!r}, embedding_shape={emb!r})
"""


def test_a_process_killed_while_creating_leaves_nothing_in_the_way(tmp_path) -> None:
    path = tmp_path / "c.zarr"
    proc = _python(_CREATE_SLOWLY.format(path=str(path), sig=SIG, grid=GRID, emb=EMB))
    _wait_for(proc, "building")
    _kill(proc)
    assert not path.exists()  # built aside: nothing at the cache's path
    assert len(_hidden(tmp_path)) == 1  # the dead process's partial build
    with pytest.raises(TileSAMError, match="No embedding cache"):
        EmbeddingStore.open(path)  # resume finds nothing, and says so
    store = EmbeddingStore.open_or_create(path, **KW)  # the next run just creates it
    store.write_tile(0, 1, 2, np.ones(EMB), META)
    assert store.done_tiles() == [(0, 1, 2)] and store.verify().ok
    assert _hidden(tmp_path) == []  # the dead process's leftovers are cleaned up


_CREATE_WHEN_TOLD = """
import sys
from tilesam.cache.store import EmbeddingStore
print("ready", flush=True)
sys.stdin.readline()
EmbeddingStore.create({path!r}, signature={sig!r}, grid_shape={grid!r}, embedding_shape={emb!r})
print("created", flush=True)
"""


def test_kills_at_random_moments_of_creation_never_block_the_next_run(tmp_path) -> None:
    rng = np.random.default_rng(23)
    for i in range(6):
        path = tmp_path / f"c{i}.zarr"
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_CREATE_WHEN_TOLD).format(
                path=str(path), sig=SIG, grid=(4, 20, 20), emb=EMB)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(float(rng.uniform(0, 0.06)))  # creating takes some 30 ms
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # Whatever the moment: a whole store, or nothing; never a half-made one.
        if path.exists():
            assert EmbeddingStore.open(path, **{"signature": SIG}).n_done == 0
        store = EmbeddingStore.open_or_create(path, **{**KW, "grid_shape": (4, 20, 20)})
        store.write_tile(3, 19, 19, np.ones(EMB), META)
        assert store.verify().ok


# -- what an older TileSAM left ---------------------------------------------------------------
_OLD_CREATE = """
import time, zarr
keys = {{"name": "default", "configuration": {{"separator": "/"}}}}
group = zarr.open_group({path!r}, mode="w-", zarr_format=3)  # as TileSAM format 1 did it
group.create_array("embeddings", shape=(1, 2, 3, 8, 4, 4), chunks=(1, 1, 1, 8, 4, 4),
                   dtype="float16", fill_value=0.0, chunk_key_encoding=keys)
group.create_array("tile_shape", shape=(1, 2, 3, 2), chunks=(1, 1, 1, 2), dtype="int32",
                   fill_value=0, compressors=None, chunk_key_encoding=keys)
print("building", flush=True)
time.sleep(120)  # killed before the attributes were written
"""


def _old_unfinished(path: Path) -> None:
    proc = _python(_OLD_CREATE.format(path=str(path)))
    _wait_for(proc, "building")
    _kill(proc)
    assert json.loads((path / "zarr.json").read_text())["attributes"] == {}


def test_an_unfinished_creation_of_an_older_tilesam_is_recognised_and_replaced(tmp_path) -> None:
    path = tmp_path / "c.zarr"
    _old_unfinished(path)
    with pytest.raises(TileSAMError, match="interrupted.*--overwrite"):
        EmbeddingStore.open(path, mode="r")
    assert EmbeddingStore.open_existing(path) is None  # "no cache yet", for a session
    store = EmbeddingStore.open_or_create(path, **KW)  # replaced, without being asked
    assert store.n_done == 0 and store.signature == SIG and store.verify().ok
    # ... and with overwrite=True, which refused it before.
    other = tmp_path / "d.zarr"
    _old_unfinished(other)
    assert EmbeddingStore.create(other, **KW, overwrite=True).n_tiles == 6
    assert _hidden(tmp_path) == []


def test_a_session_resumes_over_an_unfinished_creation_of_an_older_tilesam(tmp_path, model) -> None:
    from tilesam.samples import load_sample
    from tilesam.segment.session import Session

    path = tmp_path / "c.zarr"
    _old_unfinished(path)
    session = Session(load_sample("nuclei")[0], model, path, tile_size=128, halo=16)
    assert session.embed(progress=False) == session.n_tiles


def test_overwrite_still_replaces_only_tilesam_stores(tmp_path) -> None:
    # A store whose zarr.json was destroyed is still recognised as ours by its arrays ...
    path = tmp_path / "c.zarr"
    EmbeddingStore.create(path, **KW).write_tile(0, 0, 0, np.ones(EMB), META)
    (path / "zarr.json").write_text("{garbage")
    with pytest.raises(TileSAMError):
        EmbeddingStore.open(path)
    assert EmbeddingStore.open_or_create(path, **KW, overwrite=True).n_done == 0
    # ... while a folder of the user's, or a zarr group with data in it, never is.
    mine = tmp_path / "mine.zarr"
    group = zarr.open_group(mine, mode="w")
    group.create_array("embeddings", shape=(2,), dtype="int32")[:] = [1, 2]
    for call in (
        lambda: EmbeddingStore.create(mine, **KW, overwrite=True),
        lambda: EmbeddingStore.open_or_create(mine, **KW, overwrite=True),
    ):
        with pytest.raises(TileSAMError, match="refusing to overwrite"):
            call()
    assert list(zarr.open_array(mine / "embeddings")[:]) == [1, 2]


# -- two creators at once ---------------------------------------------------------------------
_CREATOR = """
import sys, time
import numpy as np
from pathlib import Path
from tilesam.cache.store import EmbeddingStore
# Both interpreters up (imports done, however loaded the machine), then go together.
Path({path!r} + ".ready{tile}").touch()
while not all(Path({path!r} + f".ready{{i}}").exists() for i in (0, 1)):
    time.sleep(0.001)
if {how!r} == "create":
    store = EmbeddingStore.create({path!r}, signature={sig!r}, grid_shape={grid!r},
                                  embedding_shape={emb!r}, overwrite={overwrite!r})
else:
    store = EmbeddingStore.open_or_create({path!r}, signature={sig!r}, grid_shape={grid!r},
                                          embedding_shape={emb!r}, overwrite={overwrite!r})
store.write_tile(0, 0, {tile!r}, np.full({emb!r}, {tile!r} + 1.0), {meta!r})
print(store._header["store_id"], flush=True)
# Still open until the other one is done too: creators that run together (however slow
# the machine), not one that replaces a store whose creator has gone (overwrite's job).
Path({path!r} + ".done{tile}").touch()
deadline = time.monotonic() + 60
while not all(Path({path!r} + f".done{{i}}").exists() for i in (0, 1)):
    assert time.monotonic() < deadline, "the other creator never finished"
    time.sleep(0.001)
"""


def _race(path: Path, hows: tuple[str, str], overwrite: bool) -> list[str]:
    procs = [
        _python(_CREATOR.format(how=how, path=str(path), sig=SIG, grid=GRID,
                                emb=EMB, overwrite=overwrite, tile=i, meta=META))
        for i, how in enumerate(hows)
    ]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err  # never ContainsArrayError, FileExistsError, ...
    return [out.strip() for out, _ in outs]


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_processes_creating_one_cache_share_it(tmp_path, overwrite) -> None:
    for i, hows in enumerate([("create", "create"), ("create", "open_or_create")] * 2):
        path = tmp_path / f"c{i}.zarr"
        if overwrite:  # both replace the same old store at the same moment
            EmbeddingStore.create(path, **KW).write_tile(0, 1, 1, np.ones(EMB), META)
        old = EmbeddingStore.open(path)._header["store_id"] if overwrite else None
        ids = _race(path, hows, overwrite)
        assert ids[0] == ids[1]  # one store: the second creator opened the first one's
        store = EmbeddingStore.open(path, signature=SIG)
        assert store._header["store_id"] == ids[0]
        # Neither write was lost; the old store is kept only where it was in use (opened
        # by open_or_create, whose overwrite replaces only a store made for other inputs).
        kept = ids[0] == old
        assert store.done_tiles() == [(0, 0, 0), (0, 0, 1)] + [(0, 1, 1)] * kept
        for tx in (0, 1):
            np.testing.assert_array_equal(store.read_tile(0, 0, tx), np.full(EMB, tx + 1.0))
        assert store.verify().ok and _hidden(tmp_path) == []


def test_a_store_made_after_open_or_create_looked_is_shared(tmp_path, monkeypatch) -> None:
    """The window two `tilesam embed` commands started together hit: the second looked,
    found nothing, and the first placed its store before the second began to create."""
    from tilesam.cache import creation

    path = tmp_path / "c.zarr"
    looked = creation.state(path)
    EmbeddingStore.create(path, **KW).write_tile(0, 0, 1, np.ones(EMB), META)  # theirs
    real = creation.state
    seen = iter([looked])  # open_or_create's first look predates their store
    monkeypatch.setattr(creation, "state", lambda p: next(seen, None) or real(p))
    store = EmbeddingStore.open_or_create(path, **KW)
    assert store.done_tiles() == [(0, 0, 1)]  # theirs, opened: nothing lost
    # A store made meanwhile for other inputs is refused as any existing one is.
    other = tmp_path / "d.zarr"
    EmbeddingStore.create(other, **{**KW, "signature": {**SIG, "tile_size": 32}})
    seen = iter(["missing"])
    with pytest.raises(TileSAMError, match="tile_size"):
        EmbeddingStore.open_or_create(other, **KW)


def test_a_full_disk_during_creation_leaves_nothing_behind(small_disk) -> None:
    disk = small_disk(128)
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    with pytest.raises(TileSAMError, match="Could not create the embedding cache.*space"):
        EmbeddingStore.create(disk / "c.zarr", **KW)
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_a_closed_store_is_no_longer_held_open(tmp_path) -> None:
    """close() lets go at once (not when the object is collected): another process may then
    replace the store, and the disk it is on be unmounted."""
    path = tmp_path / "c.zarr"
    store = EmbeddingStore.create(path, **KW)
    again = EmbeddingStore.open(path)  # one hold per process, however many objects

    def unused_elsewhere() -> str:
        code = "from pathlib import Path; from tilesam.cache import in_use\n"
        check = _python(code + f"print(in_use.unused(Path({str(path)!r})))")
        out, err = check.communicate(timeout=60)
        assert check.returncode == 0, err
        return out.strip()

    assert unused_elsewhere() == "False"
    store.close()
    store.close()  # twice is harmless
    assert unused_elsewhere() == "False"  # `again` still holds it
    again.close()
    assert unused_elsewhere() == "True"
