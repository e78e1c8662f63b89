"""Embedders of one cache share the work (issue 23): two runs at once compute each tile
once between them, both finish, and the cache is the one a single run makes, bit for bit;
a dead embedder's tiles are taken over. The runs are real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import tifffile
import torch

from tilesam.cache.store import EmbeddingStore
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.samples import load_sample
from tilesam.segment.session import Session

_EMBEDDER = """
import dataclasses, json, sys, time
import torch
torch.set_num_threads(1)
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.models.sam_model import SamModel
from tilesam.samples import load_sample
from tilesam.segment.session import Session

arch = dataclasses.replace(ARCHITECTURES["tiny"], image_size=256, embedding_size=16)
torch.manual_seed(0)  # the random `tiny` of tests/conftest.py
model = SamModel(build_sam(arch), name="tiny-random", architecture=arch,
                 weights_hash="random-seed0")
encode = model.embed_batch

def slower(*args, **kwargs):  # an encoder slow enough for the two runs to overlap
    time.sleep({pause!r})
    return encode(*args, **kwargs)

model.embed_batch = slower
image = load_sample("nuclei")[0]
while time.time() < {start!r}:
    time.sleep(0.001)
session = Session(image, model, {cache!r}, tile_size=64, halo=8)
computed = session.embed(progress=False, batch_size=2)
print(json.dumps({{"computed": computed, "done": session.n_done, "total": session.n_tiles}}))
"""


def _embedders(cache, n: int, pause: float = 0.1) -> list[dict]:
    start = time.time() + 4  # every interpreter is up by then
    code = textwrap.dedent(_EMBEDDER).format(pause=pause, start=start, cache=str(cache))
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]  # fmt: skip
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "different inputs" not in err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _assert_same_cache(a, b) -> None:
    a, b = EmbeddingStore.open(a, mode="r"), EmbeddingStore.open(b, mode="r")
    assert a.done_tiles() == b.done_tiles() and a.n_done == a.n_tiles
    for tile in a.done_tiles():
        np.testing.assert_array_equal(a.read_tile(*tile), b.read_tile(*tile))
        assert a.read_meta(*tile) == b.read_meta(*tile)
    assert a.verify().ok and b.verify().ok


def test_two_embedders_of_one_new_cache_share_the_tiles(tmp_path) -> None:
    (reference,) = _embedders(tmp_path / "single.zarr", 1, pause=0)
    assert reference["computed"] == reference["total"] == 25
    runs = _embedders(tmp_path / "shared.zarr", 2)
    assert [r["done"] for r in runs] == [25, 25]  # both finish, with the whole cache
    computed = [r["computed"] for r in runs]
    assert sum(computed) == 25 and min(computed) > 0, computed  # not 2 x 25
    _assert_same_cache(tmp_path / "single.zarr", tmp_path / "shared.zarr")
    assert list((tmp_path / "shared.zarr" / "claims").glob("*.*.*")) == []  # none left


def test_two_tilesam_embed_commands_share_the_tiles(tmp_path) -> None:
    torch.manual_seed(0)
    torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), tmp_path / "random.pt")
    image = np.random.default_rng(0).integers(100, 400, (600, 700)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "image.tif", image)
    argv = [sys.executable, "-m", "tilesam", "embed", str(tmp_path / "image.tif"),
            "--checkpoint", str(tmp_path / "random.pt"), "--cache", str(tmp_path / "c.zarr"),
            "--tile", "384", "--halo", "32", "--batch", "1"]  # fmt: skip
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    computed = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "different inputs" not in err, err
        assert "4/4 done" in out
        computed.append(int(out.split("(computed ")[1].split()[0]))
    assert sum(computed) == 4, computed  # each tile computed once between them
    assert EmbeddingStore.open(tmp_path / "c.zarr", mode="r").verify().ok


_HOLDER = """
import sys, time
from tilesam.cache.store import EmbeddingStore
store = EmbeddingStore.open({cache!r})
claims = store.claims()
for tile in {tiles!r}:
    assert claims.claim(tile)
print("claimed", flush=True)
sys.stdin.readline()  # until told: then stop without computing them
"""


@pytest.mark.parametrize("how", ["killed", "gives up"])
def test_tiles_held_by_an_embedder_that_stops_are_computed_by_the_other(
    tmp_path, model, how
) -> None:
    image = load_sample("nuclei")[0]
    cache = tmp_path / "c.zarr"
    session = Session(image, model, cache, tile_size=64, halo=8)
    held = [(0, 0, 1), (0, 2, 2), (0, 4, 4)]
    code = textwrap.dedent(_HOLDER).format(cache=str(cache), tiles=held)
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "claimed"
    result, heard = {}, []

    def embed() -> None:
        report = {"progress": False, "callback": lambda *done: heard.append(done)}
        result["n"] = session.embed(batch_size=1, **report)  # tiles alone: bit for bit

    worker = threading.Thread(target=embed)
    worker.start()
    deadline = time.monotonic() + 120
    while session.n_done < 22 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert worker.is_alive() and session.n_done == 22  # it waits for the held tiles
    assert not any(session.store.is_done(*t) for t in held)
    if how == "killed":
        holder.send_signal(signal.SIGKILL)  # the kernel drops its claims
    else:
        holder.stdin.write("stop\n")
        holder.stdin.flush()
    holder.wait(timeout=30)
    worker.join(timeout=120)
    assert not worker.is_alive() and result["n"] == 25 and session.n_done == 25
    assert heard[-1] == (25, 25)
    reference = Session(image, model, tmp_path / "single.zarr", tile_size=64, halo=8)
    reference.embed(progress=False, batch_size=1)
    _assert_same_cache(tmp_path / "single.zarr", cache)


def test_two_threads_embedding_one_session_compute_each_tile_once(
    tmp_path, model, monkeypatch
) -> None:
    """Embedders in one process (a GUI's embedding task and a click's on-demand task) share
    the work like processes do: each holds its own claims."""
    encode = model.embed_batch

    def slower(*args, **kwargs):  # slow enough for the two threads to overlap
        time.sleep(0.05)
        return encode(*args, **kwargs)

    monkeypatch.setattr(model, "embed_batch", slower)
    session = Session(load_sample("nuclei")[0], model, tmp_path / "c.zarr", tile_size=64, halo=8)
    computed: list[int] = []
    threads = [
        threading.Thread(target=lambda: computed.append(session.embed(progress=False)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(computed) == 2 and sum(computed) == session.n_tiles == session.n_done == 25
    assert session.store.verify().ok
