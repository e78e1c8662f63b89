"""Comparing segment-everything methods on the sample nuclei: every method on every image,
the baseline at its chosen min_distance, JSON and CSV; duplicates and split objects."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from tilesam.errors import TileSAMError
from tilesam.evaluate.datasets import LabelledImage
from tilesam.evaluate.instance_comparison import BASELINE, compare_instances
from tilesam.evaluate.instances import (
    best_min_distance,
    duplicates_and_splits,
    score_instances,
    watershed_baseline,
)
from tilesam.samples import load_sample


@pytest.fixture(scope="module")
def data() -> list[LabelledImage]:
    """Two real fields with their hand-drawn labels."""
    items = []
    for name in ("nuclei", "nuclei_heldout"):
        image, truth = load_sample(name)
        items.append(LabelledImage(image, truth.astype(np.uint32), name))
    return items


def _truth_of(data):
    """A method that answers each image with its own labels (by identity)."""
    return lambda image: next(d.labels for d in data if d.image is image)


def test_every_method_is_scored_on_every_image_beside_the_tuned_baseline(data) -> None:
    seen = []

    def blobs(image: np.ndarray) -> np.ndarray:  # threshold and components: no splitting
        seen.append(image.shape)
        return ndimage.label(image > image.mean())[0]

    result = compare_instances({"truth": _truth_of(data), "blobs": blobs}, data, progress=False)
    assert [m.name for m in result.methods] == ["truth", "blobs", BASELINE]
    assert seen == [d.image.shape for d in data]  # each image once, in order
    assert result["truth"].mean["f1"] == result["truth"].mean["msa"] == 1.0
    pairs = [(d.image, d.labels) for d in data]
    best, by_distance = best_min_distance(pairs)
    assert result[BASELINE].notes == {"min_distance": best, "msa_by_min_distance": by_distance}
    expected = [score_instances(watershed_baseline(im, best), t) for im, t in pairs]
    assert [s.msa for s in result[BASELINE].scores] == [s.msa for s in expected]
    # Separating touching nuclei is what the baseline adds to plain components.
    assert result[BASELINE].mean["f1"] > result["blobs"].mean["f1"]
    assert f"min_distance {best}" in result.table()


def test_json_and_csv_hold_every_image(data, tmp_path) -> None:
    result = compare_instances(
        {"truth": _truth_of(data)}, data, progress=False, info={"note": "sample"}
    )
    result.to_json(tmp_path / "r.json")
    result.to_csv(tmp_path / "r.csv")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["info"] == {"note": "sample"}
    assert set(report["methods"]) == {"truth", BASELINE}
    baseline = report["methods"][BASELINE]
    assert baseline["mean"]["f1"] == pytest.approx(np.mean([r["f1"] for r in baseline["images"]]))
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["image"]) for r in rows] == [
        (m, d.name) for m in ("truth", BASELINE) for d in data
    ]
    assert int(rows[1]["n_true"]) == len(np.unique(data[1].labels)) - 1


def test_no_images_or_a_method_named_like_the_baseline_is_refused(data) -> None:
    with pytest.raises(TileSAMError, match="No image to evaluate on"):
        compare_instances({}, [], progress=False)
    with pytest.raises(TileSAMError, match="may not be named 'baseline'"):
        compare_instances({BASELINE: _truth_of(data)}, data, progress=False)


def test_duplicates_and_splits_of_real_nuclei(data) -> None:
    truth = data[0].labels
    assert duplicates_and_splits(truth, truth) == (0, 0)
    ids, sizes = np.unique(truth[truth > 0], return_counts=True)
    big = ids[np.argmax(sizes)]
    rows = np.nonzero(truth == big)[0]
    split = truth.copy()
    split[(truth == big) & (np.arange(truth.shape[0])[:, None] >= np.median(rows))] = 999
    # Cut in two halves: both halves lie inside it (a duplicate) and cover it (a split).
    assert duplicates_and_splits(split, truth) == (1, 1)
    # A sliver of 5 % beside the rest: still a duplicate, not a split.
    sliver = truth.copy()
    sliver[(truth == big) & (np.arange(truth.shape[0])[:, None] >= np.quantile(rows, 0.95))] = 999
    assert duplicates_and_splits(sliver, truth) == (1, 0)
    # Two nuclei merged into one object: neither fault.
    merged = np.where(truth == ids[0], ids[1], truth)
    assert duplicates_and_splits(merged, truth) == (0, 0)
