"""A commit is all or nothing (issue 23): napari killed during a commit, or a write that
fails half-way, leaves the labels store with whole objects and a ``next_id`` above them.

The kills are real: a subprocess runs the plugin's commit code (`_labels.commit`, what the
``C`` key calls, without a viewer) on a real zarr store and is killed with SIGKILL at a
chosen chunk write, or at a random moment while it commits one object after another."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr
from tilesam_napari import _labels, _labels_store

SHAPE = (2, 1100, 1100)  # two slices of 2 x 2 chunks (1024 pixels): objects cross chunks
IMAGE = {"shape": list(SHAPE), "dtype": "|u1", "axes": "ZYX", "content": "sample-v1:test"}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

# The commit code in a process of its own, killed by itself at a chosen moment of the
# commit of cell CELL ("1": its first chunk write, ...; "journal": when the journal is
# removed, after data and next_id), or, with "none", committing cells CELL, CELL + 1, ...
# until the test kills it.
CHILD = textwrap.dedent(
    """
    import os, pathlib, signal, sys
    import zarr.storage
    sys.path.insert(0, {here!r})
    from test_napari_commit_kill import IMAGE, SHAPE, _windows
    from tilesam_napari import _labels, _labels_store

    path, cell, kill_at = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    array, notes = _labels_store.open_committed(path, SHAPE, IMAGE)
    print("ready", flush=True)
    if kill_at == "none":
        for k in range(cell, 101):
            assert _labels.commit(array, _windows(k))[0] == k
        sys.exit(0)
    writes = 0
    real_set, real_unlink = zarr.storage.LocalStore.set, pathlib.Path.unlink

    async def set_or_die(self, key, value, *args, **kwargs):
        global writes
        writes += 1
        if str(writes) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return await real_set(self, key, value, *args, **kwargs)

    def unlink_or_die(self, *args, **kwargs):
        if self.name == _labels.JOURNAL and kill_at == "journal":
            os.kill(os.getpid(), signal.SIGKILL)
        return real_unlink(self, *args, **kwargs)

    zarr.storage.LocalStore.set, pathlib.Path.unlink = set_or_die, unlink_or_die
    _labels.commit(array, _windows(cell))
    print("writes", writes, flush=True)
    """
).format(here=os.path.dirname(os.path.abspath(__file__)))


def _cell(k: int) -> tuple[slice, slice]:
    """Cell k (1..100) of a 10 x 10 grid; cells 91..100 cross the chunk edge y = 1024,
    cell 100 the edge x = 1024 too."""
    row, col = divmod(k - 1, 10)
    return slice(row * 110 + 20, row * 110 + 110), slice(col * 110 + 20, col * 110 + 110)


def _windows(k: int) -> list[_labels.Window]:
    """Object k: cell k on both slices."""
    ys, xs = _cell(k)
    mask = np.ones((ys.stop - ys.start, xs.stop - xs.start), bool)
    return [_labels.Window(z, (ys.start, xs.start), mask) for z in range(SHAPE[0])]


def _expected(n: int) -> np.ndarray:
    """The labels after objects 1..n, each whole."""
    labels = np.zeros(SHAPE, np.uint32)
    for k in range(1, n + 1):
        labels[(slice(None), *_cell(k))] = k
    return labels


def _child(path, cell: int, kill_at: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(cell), kill_at],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _store(tmp_path, n: int) -> zarr.Array:
    """A labels store holding objects 1..n, committed by the plugin's code."""
    array, _ = _labels_store.open_committed(tmp_path / "img.labels.zarr", SHAPE, IMAGE)
    for k in range(1, n + 1):
        assert _labels.commit(array, _windows(k))[0] == k
    return array


def _check_whole(path, n: int) -> None:
    """The store holds exactly objects 1..n, whole, next_id n + 1, and no journal."""
    array, _ = _labels_store.open_committed(path, SHAPE, IMAGE)
    np.testing.assert_array_equal(array[:], _expected(n))
    assert array.attrs["next_id"] == n + 1
    assert not (path / _labels.JOURNAL).exists()


# Cell 100 covers 4 chunks on each slice: 8 chunk writes, then the store's zarr.json
# (next_id), then the journal is removed.
@pytest.mark.parametrize("kill_at", ["1", "5", "8", "9", "journal"])
def test_a_commit_killed_midway_is_rolled_back_whole(tmp_path, kill_at):
    path = tmp_path / "img.labels.zarr"
    _store(tmp_path, 3)
    before = zarr.open_array(str(path), mode="r")[:]
    child = _child(path, 100, kill_at)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    assert (path / _labels.JOURNAL).exists()  # killed during the commit
    if kill_at == "5":  # one slice written, not the other: half an object on disk
        half = zarr.open_array(str(path), mode="r")[:]
        assert (half[0] == 4).any() and not (half[1] == 4).any()

    array, notes = _labels_store.open_committed(path, SHAPE, IMAGE)
    assert any("rolled back" in n for n in notes)
    np.testing.assert_array_equal(array[:], before)  # objects 1..3 whole, nothing of 99
    assert array.attrs["next_id"] == 4 and not (path / _labels.JOURNAL).exists()
    ys, xs = _cell(100)
    assert _labels.commit(array, _windows(100))[0] == 4  # the next object gets a fresh id
    assert (array[(slice(None), ys, xs)] == 4).all()


def test_random_kills_while_committing_leave_whole_objects(tmp_path):
    path, done = tmp_path / "img.labels.zarr", 0
    _store(tmp_path, 0)
    rng = random.Random(23)
    for _ in range(4):
        child = _child(path, done + 1, "none")
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=60)
        array, _ = _labels_store.open_committed(path, SHAPE, IMAGE)  # rolls back a cut commit
        done = int(array.attrs["next_id"]) - 1
        _check_whole(path, done)
    assert done > 0


def test_a_write_that_fails_halfway_changes_nothing(tmp_path, monkeypatch):
    array = _store(tmp_path, 2)
    before = array[:]
    writes = []
    real = type(array).__setitem__

    def fail_second(self, key, value):
        writes.append(key)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        return real(self, key, value)

    monkeypatch.setattr(type(array), "__setitem__", fail_second)
    with pytest.raises(OSError, match="No space"):
        _labels.commit(array, _windows(3))
    monkeypatch.undo()
    np.testing.assert_array_equal(array[:], before)
    assert array.attrs["next_id"] == 3
    assert not (tmp_path / "img.labels.zarr" / _labels.JOURNAL).exists()
    assert _labels.commit(array, _windows(3))[0] == 3
