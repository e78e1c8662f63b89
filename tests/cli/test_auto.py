"""``tilesam auto`` on real files with the bundled `tiny`: labels and table written, an
existing output refused unless --overwrite, an image without objects, bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from tilesam.cli import main
from tilesam.io import open_image

# Discs on every border of a 2 x 2 grid of 256-pixel tiles (halo 16), 9 in all.
TILING = ["--tile", "256", "--halo", "16", "--points-per-side", "12"]


def discs_image() -> tuple[np.ndarray, np.ndarray]:
    size, cut = 480, 240
    yy, xx = np.indices((size, size))
    centres = [(cut, 120), (cut, 360), (120, cut), (360, cut), (cut, cut)]
    centres += [(120, 120), (120, 360), (360, 120), (360, 360)]
    truth = np.zeros((size, size), np.uint16)
    for k, (y, x) in enumerate(centres, start=1):
        truth[(yy - y) ** 2 + (xx - x) ** 2 <= 24**2] = k
    noise = np.random.default_rng(0).normal(0, 6, truth.shape)
    return np.clip(np.where(truth > 0, 190, 25) + noise, 0, 255).astype(np.uint8), truth


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    image, truth = discs_image()
    tifffile.imwrite(root / "discs.tif", image, imagej=True, resolution=(4, 4))
    np.save(root / "truth.npy", truth)
    tifffile.imwrite(
        root / "dark.tif",
        np.full((300, 300), 20, np.uint8)
        + (np.random.default_rng(1).integers(0, 3, (300, 300)).astype(np.uint8)),
    )
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_labels_and_table_round_trip_and_the_cache_is_reused(files, capsys) -> None:
    out, table, cache = files / "labels.tif", files / "objects.csv", files / "discs.zarr"
    code, stdout, _ = run(
        capsys, "auto", files / "discs.tif", "--cache", cache, "--out", out, "--table", table,
        *TILING,
    )  # fmt: skip
    assert code == 0 and "9 objects" in stdout and str(out) in stdout
    labels = open_image(out).read()
    truth = np.load(files / "truth.npy")
    assert labels.shape == truth.shape and sorted(np.unique(labels))[1:] == list(range(1, 10))
    for k in range(1, 10):  # each disc is one object, mostly covered
        ids, counts = np.unique(labels[truth == k], return_counts=True)
        assert len(ids[ids > 0]) == 1 and counts[ids > 0].sum() > 0.8 * counts.sum()
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["id"]) for r in rows] == list(range(1, 10))
    area = int(rows[0]["area"])
    assert float(rows[0]["area_physical"]) == pytest.approx(area * 0.25 * 0.25)
    # Again from the complete cache, replacing the outputs.
    code, stdout, err = run(
        capsys, "auto", files / "discs.tif", "--cache", cache, "--out", out, "--table", table,
        "--overwrite", *TILING,
    )  # fmt: skip
    assert code == 0 and "embedding" not in err
    assert np.array_equal(open_image(out).read(), labels)


def test_an_existing_output_is_refused_without_overwrite(files, capsys) -> None:
    out = files / "kept.tif"
    out.write_bytes(b"previous")
    code, _, err = run(capsys, "auto", files / "discs.tif", "--out", out, *TILING)
    assert code == 2 and "exists: pass --overwrite" in err
    assert out.read_bytes() == b"previous"


def test_an_image_without_objects_writes_empty_labels_and_says_so(files, capsys) -> None:
    out = files / "dark_labels.ome.zarr"
    code, stdout, _ = run(capsys, "auto", files / "dark.tif", "--out", out, *TILING)
    assert code == 0 and "No object found" in stdout
    assert not open_image(out).read().any()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-score", "1.5"], "min_score must be a number from 0 to 1"),
        (["--min-size", "-3"], "min_size must be a whole number >= 0"),
        (["--points-per-side", "0"], "points_per_side must be a whole number >= 1"),
        (["--mode", "magic"], "Unknown mode 'magic'"),
        (["--mode", "instance", "--instance-head", "none.pt"], "Instance head none.pt does not"),
        (["--table", "objects.xlsx"], "written as CSV"),
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_is_written(files, capsys, extra, message):
    out = files / "never.tif"
    code, _, err = run(capsys, "auto", files / "discs.tif", "--out", out, *extra)
    assert code == 2 and message in err and err.count("error") == 1
    assert not out.exists()


def test_auto_is_listed_with_its_options(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["auto", "--help"])
    help_text = capsys.readouterr().out
    for option in ("--out", "--table", "--mode", "--min-size", "--overwrite", "--overwrite-cache"):
        assert option in help_text


def test_threads_limit_the_model_and_bad_counts_are_refused(files, capsys) -> None:
    import torch

    before = torch.get_num_threads()
    out = files / "threads.tif"
    try:
        code, _, _ = run(capsys, "auto", files / "discs.tif", "--out", out, "--threads", "1",
                         *TILING)  # fmt: skip
        assert code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    code, _, err = run(
        capsys, "auto", files / "discs.tif", "--out", files / "t0.tif", "--threads", "0"
    )
    assert code == 2 and "--threads must be a whole number >= 1" in err
