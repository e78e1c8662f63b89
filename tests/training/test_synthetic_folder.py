"""Tests for folders of whole synthetic images (tilesam.training.synthetic.folder)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from tilesam.cli import main
from tilesam.errors import TileSAMError
from tilesam.evaluate.datasets import LabelledImageFolder
from tilesam.training.synthetic import write_synthetic_folder

KINDS = ("nuclei", "cells", "ct", "aerial")


def test_folder_reads_back_as_a_labelled_dataset(tmp_path) -> None:
    paths = write_synthetic_folder(tmp_path, KINDS, count=8, seed=3, side=128, max_zoom=4.0)
    data = LabelledImageFolder(tmp_path)
    assert len(data) == 8 == len(paths)
    sides = []
    for item in data:
        assert item.labels.shape == item.image.shape[:2]
        assert item.labels.max() >= 1
        sides.append(item.image.shape[0])
    # Every image fills the input at a zoom between 1 and max_zoom, and the zooms differ.
    assert all(128 / 4.0 - 1 <= s <= 128 for s in sides)
    assert len(set(sides)) > 1
    assert [p.name for p in paths[:4]] == [f"{k}{i:03d}.tif" for i, k in enumerate(KINDS)]
    assert tifffile.imread(paths[3]).shape[2] == 3  # aerial is RGB


def test_same_seed_same_images_and_a_larger_count_extends(tmp_path) -> None:
    a = write_synthetic_folder(tmp_path / "a", ("nuclei", "ct"), count=3, seed=5, side=96)
    b = write_synthetic_folder(tmp_path / "b", ("nuclei", "ct"), count=4, seed=5, side=96)
    c = write_synthetic_folder(tmp_path / "c", ("nuclei", "ct"), count=3, seed=6, side=96)
    for pa, pb in zip(a, b, strict=False):
        np.testing.assert_array_equal(tifffile.imread(pa), tifffile.imread(pb))
    assert not np.array_equal(tifffile.imread(a[0]), tifffile.imread(c[0]))


def test_cells_label_nuclei_or_cells_never_clusters(tmp_path) -> None:
    paths = write_synthetic_folder(tmp_path, ("cells",), count=6, seed=0, side=96, max_zoom=1.0)
    counts = [int(tifffile.imread(p.with_name(p.stem + "_labels.tif")).max()) for p in paths]
    assert min(counts) >= 2, counts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": ("nuclei", "mitochondria")}, "mitochondria"),
        ({"count": 0}, "count must be >= 1"),
        ({"max_zoom": 0.5}, "max_zoom"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message) -> None:
    with pytest.raises(TileSAMError, match=message):
        write_synthetic_folder(tmp_path, **kwargs)


def test_cli_writes_a_folder(tmp_path, capsys) -> None:
    out = tmp_path / "synth"
    assert main(["synthesize", "--out", str(out), "--kinds", "nuclei", "--count", "2"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "nuclei000.tif",
        "nuclei000_labels.tif",
        "nuclei001.tif",
        "nuclei001_labels.tif",
    ]
    assert main(["synthesize", "--out", str(out), "--kinds", "stars"]) == 2
    assert "stars" in capsys.readouterr().err
    (tmp_path / "a_file").touch()
    assert main(["synthesize", "--out", str(tmp_path / "a_file"), "--count", "1"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
