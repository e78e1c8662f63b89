"""The command line, run in-process: embed, info and segment on real files, and bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
import torch

from tilesam.cli import main
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.store import EmbeddingStore

# 600 x 700 with 384-pixel tiles and halo 32: a 2 x 2 grid (each tile is resized to the
# random `tiny` model's 1024 input).
TILING = ["--tile", "384", "--halo", "32"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), root / f"random{seed}.pt")
    rng = np.random.default_rng(0)
    image = rng.integers(100, 400, (600, 700)).astype(np.uint16)
    tifffile.imwrite(root / "image.tif", image, tile=(128, 128), compression="zlib")
    other = image.copy()
    other[:, ::5] += 7
    tifffile.imwrite(root / "other.tif", other)
    volume = rng.integers(0, 255, (3, 200, 300)).astype(np.uint8)
    tifffile.imwrite(root / "volume.tif", volume, photometric="minisblack")
    return root


@pytest.fixture(scope="module")
def cache(files):
    path = files / "image.zarr"
    args = ["embed", str(files / "image.tif"), "--checkpoint", str(files / "random0.pt")]
    assert main([*args, "--cache", str(path), *TILING]) == 0
    return path


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_resumes_and_reports(files, cache, capsys) -> None:
    store = EmbeddingStore.open(cache, mode="r")
    assert store.n_done == store.n_tiles == 4
    store = EmbeddingStore.open(cache)
    store.discard_tile(0, 1, 1)
    code, out, err = _run(capsys, "embed", files / "image.tif", "--checkpoint",
                          files / "random0.pt", "--cache", cache)  # fmt: skip
    assert code == 0 and "4/4 done (computed 1 in" in out
    assert "embedding" in err and "1/1" in err  # the progress bar


def test_info(files, cache, capsys) -> None:
    code, out, _ = _run(capsys, "info", cache)
    assert code == 0
    for text in ("tiling.tile_size: 384", "tiling.halo: 32", "model.weights_sha256: ",
                 "normalisation.range: [", "image.shape: [600, 700]", "image.content: sample-v1:",
                 "tiles: 4/4 done (complete)", "size on disk: ", "MiB per tile"):  # fmt: skip
        assert text in out


def test_segment_with_cache_writes_full_size_mask(files, cache, capsys) -> None:
    out_path = files / "mask.tif"
    # The cache's tiling is used without repeating --tile/--halo.
    code, out, _ = _run(capsys, "segment", files / "image.tif", "--checkpoint",
                        files / "random0.pt", "--cache", cache, "--point", "300,350",
                        "--point", "10,10,0", "--out", out_path)  # fmt: skip
    assert code == 0 and "predicted IoU" in out and "tile(s)" in out
    mask = tifffile.imread(out_path)
    assert mask.shape == (600, 700) and set(np.unique(mask)) <= {0, 255}
    assert f"mask: {np.count_nonzero(mask)} pixels" in out


def test_segment_computes_missing_tiles_and_volumes(files, capsys, tmp_path) -> None:
    code, out, err = _run(capsys, "segment", files / "volume.tif", "--checkpoint",
                          files / "random0.pt", "--cache", tmp_path / "v.zarr", "--z", 1,
                          "--box", "20,30,150,200", "--out", tmp_path / "m.png")  # fmt: skip
    assert code == 0 and (tmp_path / "m.png").is_file() and "on demand" in err
    done = EmbeddingStore.open(tmp_path / "v.zarr").done_tiles()
    assert done and {z for z, _, _ in done} == {1}  # only what the click needed
    code, _, err = _run(capsys, "segment", files / "volume.tif", "--checkpoint",
                        files / "random0.pt", "--z", 5, "--point", "5,5", "--out",
                        tmp_path / "m.tif")  # fmt: skip
    assert code == 2 and "z=5 does not exist" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "{root}/nowhere.zarr"], "No embedding cache"),
        (["info", "{root}"], "not a TileSAM embedding cache"),
        (["embed", "{root}/missing.tif", "--checkpoint", "{root}/random0.pt", "--cache",
          "{root}/x.zarr"], "No such file"),
        (["embed", "{root}/image.tif", "--checkpoint", "{root}/random0.pt", "--cache",
          "{root}"], "not a TileSAM embedding cache"),
        (["embed", "{root}/other.tif", "--checkpoint", "{root}/random0.pt", "--cache",
          "{root}/image.zarr"], r"different inputs.*image\.content.*--overwrite"),
        (["embed", "{root}/image.tif", "--checkpoint", "{root}/random1.pt", "--cache",
          "{root}/image.zarr"], r"different inputs.*model\.weights_sha256"),
        (["segment", "{root}/image.tif", "--checkpoint", "{root}/random0.pt", "--cache",
          "{root}/image.zarr", "--point", "600,10", "--out", "{root}/m.tif"], "outside the image"),
        (["segment", "{root}/image.tif", "--checkpoint", "{root}/random0.pt", "--point", "5,5",
          "--out", "{root}/m.jpg"], "use .tif or .png"),
    ],
)  # fmt: skip
def test_bad_input_exits_2(files, cache, capsys, argv, message) -> None:
    code, out, err = _run(capsys, *[a.format(root=files) for a in argv])
    assert code == 2 and err.startswith("tilesam: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert EmbeddingStore.open(cache, mode="r").n_done == 4  # nothing written earlier is lost
