"""``tilesam check`` finds damaged tiles, ``--repair`` discards them, and ``tilesam embed``
(which refuses a cache with damaged tiles, naming them and this fix) computes them again."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile
import torch

from tilesam.cache.store import EmbeddingStore
from tilesam.cache.store_layout import chunk_file
from tilesam.cli import main
from tilesam.models.registry import ARCHITECTURES, build_sam


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A complete cache of 2 x 2 tiles (a random `tiny`, 384-pixel tiles, halo 32)."""
    root = tmp_path_factory.mktemp("check")
    torch.manual_seed(0)
    torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), root / "random.pt")
    image = np.random.default_rng(0).integers(100, 400, (600, 700)).astype(np.uint16)
    tifffile.imwrite(root / "image.tif", image)
    embed = f"embed {root}/image.tif --checkpoint {root}/random.pt --cache {root}/c.zarr"
    assert main([*embed.split(), "--tile", "384", "--halo", "32", "--batch", "1"]) == 0
    return root, embed


@pytest.fixture
def cache(made, tmp_path):
    copy = tmp_path / "c.zarr"
    shutil.copytree(made[0] / "c.zarr", copy)
    return copy


def _run(capsys, argv: str) -> tuple[int, str, str]:
    code = main(argv.split())
    out, err = capsys.readouterr()
    return code, out, err


def _embed(made, cache) -> str:
    return made[1].replace(f"{made[0]}/c.zarr", str(cache)) + " --batch 1 --tile 384 --halo 32"


def test_check_on_an_intact_cache(cache, capsys) -> None:
    code, out, _ = _run(capsys, f"check {cache}")
    assert code == 0 and "format 2 (checksums); 4/4 tiles done" in out
    assert "all 4 finished tiles check out" in out
    code, out, _ = _run(capsys, f"info {cache}")
    assert code == 0 and "format: 2 (tiles checksummed)" in out


def test_check_repair_and_embed_recompute_damaged_tiles(made, cache, capsys) -> None:
    original = EmbeddingStore.open(made[0] / "c.zarr", mode="r")
    chunk_file(cache, "embeddings", (0, 0, 1), 0, 0, 0).unlink()  # its done mark stays
    shutil.copyfile(
        chunk_file(cache, "embeddings", (0, 0, 0), 0, 0, 0),
        chunk_file(cache, "embeddings", (0, 1, 1), 0, 0, 0),
    )
    code, out, _ = _run(capsys, f"check {cache}")
    assert code == 1
    assert "damaged tile (0, 0, 1): its embedding chunk is missing" in out
    assert "damaged tile (0, 1, 1): its embedding does not match its checksum" in out
    assert f"run `tilesam check {cache} --repair`" in out
    # embed refuses, naming the tiles and the fix (and never suggests --overwrite).
    code, out, err = _run(capsys, _embed(made, cache))
    assert code == 2 and "has 2 damaged tile(s)" in err and "(0, 0, 1)" in err
    assert f"`tilesam check {cache} --repair`" in err and "overwrite" not in err
    code, out, _ = _run(capsys, f"check {cache} --repair")
    assert code == 0 and "discarded 2 damaged tile(s)" in out
    code, out, _ = _run(capsys, _embed(made, cache))
    assert code == 0 and "4/4 done (computed 2 in" in out
    code, out, _ = _run(capsys, f"check {cache}")
    assert code == 0 and "all 4 finished tiles check out" in out
    store = EmbeddingStore.open(cache, mode="r")
    for tile in original.done_tiles():
        np.testing.assert_array_equal(store.read_tile(*tile), original.read_tile(*tile))


def test_check_of_an_edited_signature_says_to_recompute(made, cache, capsys) -> None:
    meta = json.loads((cache / "zarr.json").read_text())
    meta["attributes"]["signature"]["normalisation"]["range"][1] += 100
    (cache / "zarr.json").write_text(json.dumps(meta))
    for command in (f"check {cache}", _embed(made, cache)):
        code, _, err = _run(capsys, command)
        assert code == 2 and "is damaged: its settings in zarr.json" in err
        assert "--overwrite" in err
    code, out, _ = _run(capsys, _embed(made, cache) + " --overwrite")
    assert code == 0 and "4/4 done (computed 4 in" in out


def test_check_of_what_is_not_a_cache(tmp_path, capsys) -> None:
    code, _, err = _run(capsys, f"check {tmp_path / 'nothing.zarr'}")
    assert code == 2 and "No embedding cache" in err
