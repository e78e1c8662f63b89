"""The command line, run in-process: embed, info, segment and propagate on real files, and
bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
import torch

from tilesam.cache.store import EmbeddingStore
from tilesam.cli import main
from tilesam.models.registry import ARCHITECTURES, build_sam

# 600 x 700 pixels in 384-pixel tiles with halo 32: a 2 x 2 grid (each tile is resized to
# the 1024 input of a random `tiny` model).
MODEL = "--checkpoint {root}/random0.pt"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
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


def _run(capsys, command: str, **paths) -> tuple[int, str, str]:
    """Run ``tilesam COMMAND``; ``{name}`` in a word is replaced by ``paths[name]``."""
    code = main([word.format(**paths) for word in command.split()])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cache(root):
    path = root / "image.zarr"
    argv = f"embed {root}/image.tif --checkpoint {root}/random0.pt --cache {path} --tile 384"
    assert main([*argv.split(), "--halo", "32"]) == 0
    return path


def test_embed_resumes_and_reports(root, cache, capsys) -> None:
    store = EmbeddingStore.open(cache)
    assert store.n_done == store.n_tiles == 4
    store.discard_tile(0, 1, 1)
    code, out, err = _run(
        capsys, f"embed {{root}}/image.tif {MODEL} --cache {{c}}", root=root, c=cache
    )
    assert code == 0 and "4/4 done (computed 1 in" in out
    assert "embedding" in err and "1/1" in err  # the progress bar


def test_info(cache, capsys) -> None:
    code, out, _ = _run(capsys, "info {c}", c=cache)
    assert code == 0
    for text in (
        "tiling.tile_size: 384",
        "tiling.halo: 32",
        "model.weights_sha256: ",
        "normalisation.range: [",
        "image.shape: [600, 700]",
        "image.content: sample-v1:",
        "tiles: 4/4 done (complete)",
        "size on disk: ",
        "MiB per tile",
    ):
        assert text in out
    assert "slice_scale" not in out  # a 2D image is embedded at SAM's convention


def test_segment_with_cache_writes_full_size_mask(root, cache, capsys) -> None:
    # The cache's tiling is used without repeating --tile / --halo.
    command = f"segment {{root}}/image.tif {MODEL} --cache {{c}} --point 300,350 --point 10,10,0"
    code, out, _ = _run(capsys, command + " --out {root}/mask.tif", root=root, c=cache)
    assert code == 0 and "predicted IoU" in out and "tile(s)" in out
    mask = tifffile.imread(root / "mask.tif")
    assert mask.shape == (600, 700) and set(np.unique(mask)) <= {0, 255}
    assert f"mask: {np.count_nonzero(mask)} pixels, bbox" in out  # no slice in a 2D image


def test_segment_computes_missing_tiles_of_a_volume(root, capsys, tmp_path) -> None:
    command = f"segment {{root}}/volume.tif {MODEL} --cache {{tmp}}/v.zarr --z 1"
    code, _, err = _run(
        capsys, command + " --box 20,30,150,200 --out {tmp}/m.png", root=root, tmp=tmp_path
    )
    assert code == 0 and (tmp_path / "m.png").is_file() and "on demand" in err
    done = EmbeddingStore.open(tmp_path / "v.zarr").done_tiles()
    assert done and {z for z, _, _ in done} == {1}  # only what the box needed
    command = f"segment {{root}}/volume.tif {MODEL} --z 5 --point 5,5 --out {{tmp}}/m.tif"
    code, _, err = _run(capsys, command, root=root, tmp=tmp_path)
    assert code == 2 and "z=5 does not exist" in err


def test_a_volume_embedded_once_serves_propagate_and_segment(root, capsys, tmp_path) -> None:
    """`embed`, `propagate` and `segment` give a volume the same slice scale, so they share
    its cache; another scale, or SAM's, is refused."""
    seed = np.zeros((3, 200, 300), np.uint8)
    seed[1, 60:120, 80:160] = 1
    tifffile.imwrite(tmp_path / "seed.tif", seed, photometric="minisblack")
    paths = {"root": root, "tmp": tmp_path}
    code, out, _ = _run(
        capsys, f"embed {{root}}/volume.tif {MODEL} --cache {{tmp}}/v.zarr", **paths
    )
    assert code == 0 and "3/3 done (computed 3 in" in out
    code, out, _ = _run(capsys, "info {tmp}/v.zarr", **paths)
    assert code == 0 and "tiling.slice_scale: 3.0" in out
    propagate = (
        f"propagate {{root}}/volume.tif {MODEL} --cache {{tmp}}/v.zarr --mask {{tmp}}/seed.tif "
        "--method prompt+logits --out {tmp}/labels.tif"
    )
    code, out, err = _run(capsys, propagate, **paths)
    assert code == 0 and "object(s)" in out and "on demand" not in err, err
    assert tifffile.imread(tmp_path / "labels.tif")[1].any()
    segment = (
        f"segment {{root}}/volume.tif {MODEL} --cache {{tmp}}/v.zarr --z 2 --box 60,80,120,160"
    )
    code, _, err = _run(capsys, segment + " --out {tmp}/m.png", **paths)
    assert code == 0 and "on demand" not in err, err
    for scale, shown in (("sam", "'<missing>'"), ("2", "2.0")):
        code, _, err = _run(capsys, f"{propagate} --slice-scale {scale}", **paths)
        assert code == 2 and f"tiling.slice_scale: cache=3.0, now={shown}" in err, err
    code, _, err = _run(capsys, f"{propagate} --slice-scale big", **paths)
    assert code == 2 and "Could not read --slice-scale 'big'" in err
    assert EmbeddingStore.open(tmp_path / "v.zarr", mode="r").n_done == 3


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("info {root}/nowhere.zarr", "No embedding cache"),
        ("info {root}", "not a TileSAM embedding cache"),
        (f"embed {{root}}/missing.tif {MODEL} --cache {{root}}/x.zarr", "No such file"),
        (f"embed {{root}}/image.tif {MODEL} --cache {{root}}", "not a TileSAM embedding cache"),
        (
            f"embed {{root}}/other.tif {MODEL} --cache {{root}}/image.zarr",
            r"different inputs.*image\.content.*--overwrite",
        ),
        (
            "embed {root}/image.tif --checkpoint {root}/random1.pt --cache {root}/image.zarr",
            r"different inputs.*model\.weights_sha256",
        ),
        (
            f"segment {{root}}/image.tif {MODEL} --cache {{root}}/image.zarr --point 600,10 "
            "--out {root}/m.tif",
            "outside the image",
        ),
        (
            f"segment {{root}}/image.tif {MODEL} --point 5,5 --out {{root}}/m.jpg",
            "use .tif or .png",
        ),
        (
            f"segment {{root}}/image.tif {MODEL} --point 5,5 --out {{root}}/nodir/m.tif",
            r"nodir' does not exist; create it first",
        ),
        (
            f"segment {{root}}/image.tif {MODEL} --point 5,5,nan --out {{root}}/m.tif",
            r"label is 1 \(positive\) or 0 \(negative\), got nan",
        ),
        (
            f"segment {{root}}/image.tif {MODEL} --point 5,5,0.5 --out {{root}}/m.tif",
            r"label is 1 \(positive\) or 0 \(negative\), got 0.5",
        ),
    ],
)
def test_bad_input_exits_2(root, cache, capsys, command, message) -> None:
    code, _, err = _run(capsys, command, root=root)
    assert code == 2 and err.startswith("tilesam: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert EmbeddingStore.open(cache, mode="r").n_done == 4  # nothing written earlier is lost
    assert not (root / "m.tif").exists()
