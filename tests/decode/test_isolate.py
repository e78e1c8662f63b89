"""Keeping the prompted object: components touched by positive points or the box."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tilesam.decode.isolate import keep_prompted
from tilesam.decode.prompt import Prompt


def _two_blobs() -> np.ndarray:
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:15, 5:15] = True  # left
    mask[20:35, 40:55] = True  # right
    mask[14, 15] = True  # touches the left blob diagonally: 8-connected to it
    return mask


def test_a_point_keeps_its_component_and_its_diagonal_neighbours():
    mask = _two_blobs()
    kept = keep_prompted(mask, Prompt(np.array([[8.0, 8.0]])))
    assert kept[5:15, 5:15].all() and kept[14, 15]
    assert not kept[20:35, 40:55].any()


def test_several_points_keep_several_components():
    mask = _two_blobs()
    kept = keep_prompted(mask, Prompt(np.array([[8.0, 8.0], [30.0, 50.0]])))
    np.testing.assert_array_equal(kept, mask)


def test_a_point_beside_the_mask_keeps_the_nearest_component():
    mask = _two_blobs()
    kept = keep_prompted(mask, Prompt(np.array([[30.0, 37.0]])))
    np.testing.assert_array_equal(kept[20:35, 40:55], True)
    assert not kept[5:15, 5:15].any()


def test_a_box_keeps_overlapping_components_clipped_to_it():
    mask = _two_blobs()
    kept = keep_prompted(mask, Prompt(np.zeros((0, 2)), box=(18, 38, 30, 50)))
    assert not kept[5:15, 5:15].any()
    np.testing.assert_array_equal(kept[20:30, 40:50], True)
    assert not kept[30:, :].any() and not kept[:, 50:].any()  # clipped to the box


def test_a_point_outside_the_box_keeps_its_object():
    mask = _two_blobs()
    prompt = Prompt(np.array([[8.0, 8.0]]), box=(18, 38, 30, 50))
    kept = keep_prompted(mask, prompt)
    assert kept[5:15, 5:15].all()  # the clicked blob, outside the box
    np.testing.assert_array_equal(kept[20:30, 40:50], True)
    assert not kept[30:, :].any() and not kept[:, 50:].any()  # the rest clipped to the box


def test_negative_points_only_or_an_empty_mask_change_nothing():
    mask = _two_blobs()
    no_positive = Prompt(np.zeros((0, 2)))
    assert keep_prompted(mask, no_positive) is mask
    empty = np.zeros_like(mask)
    assert not keep_prompted(empty, Prompt(np.array([[8.0, 8.0]]))).any()


def test_footprint_maps_into_scaled_and_shifted_images():
    fp = Prompt(np.array([[10.0, 20.0]]), box=(4, 8, 12, 16))
    small = fp.scaled(0.5, 0.25)
    np.testing.assert_allclose(small.points, [[5.0, 5.0]])
    assert small.box == (2.0, 2.0, 6.0, 4.0)
    moved = fp.shifted(4, 8)
    np.testing.assert_allclose(moved.points, [[6.0, 12.0]])
    assert moved.box == (0, 0, 8, 8)


def test_the_nearest_component_is_the_nearest_anywhere_in_the_image():
    # Random specks at every distance from the clicks: the growing search must agree with
    # the nearest pixel over the whole image, near and far, at the edges and in a corner.
    rng = np.random.default_rng(7)
    for density in (0.002, 0.0002, 0.00002):
        mask = rng.random((300, 400)) < density
        mask[299, 399] = True  # never empty
        labels = ndimage.label(mask, structure=np.ones((3, 3)))[0]
        for point in rng.uniform(0, (300, 400), size=(20, 2)).tolist() + [[0.0, 0.0]]:
            if labels[int(point[0]), int(point[1])]:
                continue
            where = np.argwhere(labels > 0)
            expected = labels[tuple(where[np.argmin(((where - point) ** 2).sum(axis=1))])]
            kept = keep_prompted(mask, Prompt(np.array([point])))
            assert kept[labels == expected].all() and kept.sum() == (labels == expected).sum()
