"""Simulated prompts: centre points, boxes, random points and corrective clicks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from tilesam.errors import TileSAMError
from tilesam.evaluate.simulated_prompts import (
    box_from_mask,
    center_point,
    corrective_click,
    jitter_box,
    random_point,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
DSB = SHARED / "data" / "microscopy" / "dsb2018_crop"


@pytest.fixture(scope="module")
def dsb_labels() -> np.ndarray:
    if not DSB.is_dir():
        pytest.skip(f"shared data not found at {DSB} (only on the project's machines)")
    return tifffile.imread(DSB / "labels.tif")


def _disc(shape=(64, 80), center=(30, 40), radius=12) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _exact_center(mask: np.ndarray) -> tuple[int, int]:
    """Reference: full distance transform, ties to the plateau centroid, then raster order."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ys, xs = np.nonzero(dist == dist.max())
    i = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(ys[i]), int(xs[i])


def test_center_point_of_disc_and_rectangle():
    assert center_point(_disc()) == (30, 40)
    rect = np.zeros((20, 40), bool)
    rect[5:10, 3:30] = True  # a plateau along the long axis: the middle is taken
    assert center_point(rect) == (7, 16)


def test_center_point_stays_inside_nonconvex_objects():
    ring = _disc(radius=15) & ~_disc(radius=8)
    y, x = center_point(ring)
    assert ring[y, x]
    u = np.zeros((30, 30), bool)
    u[5:25, 5:10] = u[20:25, 5:25] = u[5:25, 20:25] = True
    assert u[center_point(u)]


def test_center_point_treats_image_border_as_boundary():
    mask = np.zeros((40, 40), bool)
    mask[:, :10] = True  # touches the left, top and bottom borders
    y, x = center_point(mask)
    assert 0 < x < 9 and 0 < y < 39


@pytest.mark.parametrize("seed", range(12))
def test_center_point_large_objects_match_exact_transform(seed):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((300, 260)), rng.uniform(4, 25))
    mask = field > np.quantile(field, rng.uniform(0.3, 0.9))
    assert center_point(mask) == _exact_center(mask)


def test_center_point_on_real_nuclei(dsb_labels):
    for object_id in np.unique(dsb_labels)[1:]:
        mask = dsb_labels == object_id
        y, x = center_point(mask)
        assert mask[y, x]
        assert (y, x) == _exact_center(mask)


def test_box_from_mask_is_end_exclusive():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:11] = True
    assert box_from_mask(mask) == (2, 3, 5, 11)


def test_box_jitter_is_reproducible_and_clipped():
    mask = np.zeros((50, 60), bool)
    mask[0:20, 40:60] = True  # at the top right corner
    boxes = [box_from_mask(mask, 0.3, np.random.default_rng(s)) for s in range(200)]
    assert boxes[7] == box_from_mask(mask, 0.3, np.random.default_rng(7))
    arr = np.array(boxes)
    assert (arr[:, :2] >= 0).all() and (arr[:, 2] <= 50).all() and (arr[:, 3] <= 60).all()
    assert (arr[:, 2] > arr[:, 0]).all() and (arr[:, 3] > arr[:, 1]).all()
    assert len(set(boxes)) > 50
    # A known box jitters as its mask would (training knows its objects' boxes).
    assert jitter_box((0, 40, 20, 60), 0.3, (50, 60), np.random.default_rng(7)) == boxes[7]


def test_random_point_covers_the_object_uniformly():
    mask = np.zeros((20, 20), bool)
    mask[3:5, 10:12] = True
    rng = np.random.default_rng(0)
    points = [random_point(mask, rng) for _ in range(400)]
    assert all(mask[p] for p in points)
    assert len(set(points)) == 4


def test_empty_masks_raise():
    with pytest.raises(TileSAMError, match="empty"):
        center_point(np.zeros((5, 5), bool))
    with pytest.raises(TileSAMError, match="empty"):
        box_from_mask(np.zeros((5, 5), bool))


def test_corrective_click_positive_for_missed_part():
    gt = np.zeros((30, 30), bool)
    gt[5:25, 5:25] = True
    pred = gt.copy()
    pred[5:25, 15:25] = False
    y, x, label = corrective_click(pred, gt)
    assert label == 1 and gt[y, x] and not pred[y, x]
    assert (y, x) == _exact_center(gt & ~pred)


def test_corrective_click_negative_for_largest_false_positive():
    gt = np.zeros((40, 40), bool)
    gt[5:15, 5:15] = True
    pred = gt.copy()
    pred[20:35, 20:35] = True  # large spurious region
    pred[5:7, 5:15] = False  # small miss
    y, x, label = corrective_click(pred, gt)
    assert label == 0 and pred[y, x] and not gt[y, x]
    assert (y, x) == (27, 27)


def test_corrective_click_none_when_perfect_and_shape_checked():
    gt = _disc()
    assert corrective_click(gt, gt) is None
    with pytest.raises(TileSAMError, match="same shape"):
        corrective_click(gt[1:], gt)


def test_random_corrective_click_lands_in_region_weighted_inwards():
    gt = np.zeros((60, 60), bool)
    gt[10:50, 10:50] = True
    pred = np.zeros_like(gt)
    rng = np.random.default_rng(1)
    clicks = np.array([corrective_click(pred, gt, rng) for _ in range(600)])
    assert (clicks[:, 2] == 1).all() and gt[clicks[:, 0], clicks[:, 1]].all()
    depth = ndimage.distance_transform_cdt(np.pad(gt, 1), metric="taxicab")[1:-1, 1:-1]
    assert depth[clicks[:, 0], clicks[:, 1]].mean() > depth[gt].mean() + 1
    assert len({tuple(c) for c in clicks}) > 200
