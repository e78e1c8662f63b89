"""Instance metrics as micro-sam reports them, and the classical baseline."""

from __future__ import annotations

import numpy as np
import pytest

from tilesam.errors import TileSAMError
from tilesam.evaluate.instances import (
    best_min_distance,
    iou_matrix,
    mean_scores,
    score_instances,
    watershed_baseline,
)
from tilesam.samples import load_sample


def squares(n: int = 4) -> np.ndarray:
    labels = np.zeros((40, 40), np.uint16)
    for k in range(n):
        y, x = divmod(k, 2)
        labels[y * 20 + 2 : y * 20 + 12, x * 20 + 2 : x * 20 + 12] = k + 1
    return labels


def test_a_perfect_segmentation_scores_one_whatever_its_ids() -> None:
    truth = squares()
    pred = np.where(truth > 0, truth * 7 + 100, 0)
    s = score_instances(pred, truth)
    assert (s.f1, s.sa50, s.msa, s.precision, s.recall) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_misses_extras_and_loose_masks_count_as_micro_sam_counts_them() -> None:
    truth = squares()
    pred = truth.copy()
    pred[truth == 4] = 0  # one missed
    pred[30:35, 30:35] = 9  # one extra
    pred[2:12, 12:15] = 2  # object 2 grown: IoU 100 / 130 = 0.77
    s = score_instances(pred, truth)
    assert s.n_pred == 4 and s.n_true == 4
    assert s.f1 == pytest.approx(2 * 3 / 8) and s.sa50 == pytest.approx(3 / 5)
    # tp is 3 up to IoU 0.75, 2 from 0.80: (6 * 3 / 5 + 4 * 2 / 6) / 10
    assert s.msa == pytest.approx((6 * 3 / 5 + 4 * 2 / 6) / 10)


def test_empty_segmentations_and_shape_mismatch() -> None:
    truth = squares()
    assert score_instances(np.zeros_like(truth), truth).msa == 0.0
    assert iou_matrix(np.zeros((3, 3)), np.zeros((3, 3))).shape == (0, 0)
    with pytest.raises(TileSAMError, match="same pixels"):
        score_instances(truth[:10], truth)
    with pytest.raises(TileSAMError, match="No image was scored"):
        mean_scores([])


def test_the_baseline_finds_the_sample_nuclei_and_its_min_distance_is_chosen() -> None:
    image, truth = load_sample("nuclei")
    best, table = best_min_distance([(image, truth)], candidates=(2, 4, 8))
    assert set(table) == {2, 4, 8} and table[best] == max(table.values())
    s = score_instances(watershed_baseline(image, best), truth)
    assert s.f1 > 0.5
    assert not watershed_baseline(np.full((50, 50), 7)).any()  # a constant image: none
