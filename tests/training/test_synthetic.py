"""Tests for the synthetic training-image generator (tilesam.training.synthetic)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure

from tilesam.errors import TileSAMError
from tilesam.training.synthetic import KINDS, SyntheticSample, make_sample, sample_stream

SIZE = (160, 192)  # non-square on purpose
SEEDS = range(12)
N_LEVELS = {"nuclei": (1, 2), "cells": (3,), "ct": (2,), "aerial": (1, 2), "objects": (1,)}


@pytest.fixture(scope="module")
def samples() -> dict[str, list[SyntheticSample]]:
    return {k: [make_sample(k, SIZE, seed) for seed in SEEDS] for k in KINDS}


def _ring_contrast(img: np.ndarray, lab: np.ndarray, background_only: bool) -> np.ndarray:
    """Per object: mean inside minus mean of the pixels within 3 px outside it, / image range.

    Returns an array ``(channels, objects)``; objects with fewer than 5 ring pixels are left out.
    """
    img = img.astype(np.float64)
    chans = [img[..., c] for c in range(img.shape[2])] if img.ndim == 3 else [img]
    lab = lab.astype(np.int64)
    n = int(lab.max())
    # Every pixel near an object but not in it belongs to that object's ring; max and min filters
    # find the largest and the smallest such neighbour id.
    near_hi = ndi.grey_dilation(lab, size=7)
    near_lo = ndi.grey_erosion(np.where(lab == 0, n + 1, lab), size=7)
    rings = []
    for near in (near_hi, near_lo):
        m = (near != lab) & (near >= 1) & (near <= n)
        if background_only:
            m &= lab == 0
        rings.append((near[m], m))
    cnt_in = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    cnt_ring = sum(np.bincount(r, minlength=n + 1)[1:] for r, _ in rings)
    lo, hi = np.percentile(img, [1, 99])
    out = []
    for ch in chans:
        s_in = np.bincount(lab.ravel(), weights=ch.ravel(), minlength=n + 1)[1:]
        s_ring = sum(np.bincount(r, weights=ch[m], minlength=n + 1)[1:] for r, m in rings)
        diff = s_in / np.maximum(cnt_in, 1) - s_ring / np.maximum(cnt_ring, 1)
        out.append(diff / max(hi - lo, 1e-9))
    return np.array(out)[:, cnt_ring >= 5]


# ---------------------------------------------------------------------------------------------
# Structure
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_dtypes(samples, kind):
    for s in samples[kind]:
        assert isinstance(s, SyntheticSample)
        assert s.kind == kind
        if kind == "aerial":
            assert s.image.shape == (*SIZE, 3)
            assert s.image.dtype == np.uint8
        else:
            assert s.image.shape == SIZE
            assert s.image.dtype in (np.uint8, np.uint16)
        assert isinstance(s.levels, tuple)
        assert len(s.levels) in N_LEVELS[kind]
        for lv in s.levels:
            assert lv.shape == SIZE
            assert lv.dtype == np.uint32


@pytest.mark.parametrize("kind", KINDS)
def test_label_ids_are_consecutive_and_level0_not_empty(samples, kind):
    for s in samples[kind]:
        assert s.levels[0].max() >= 1
        for lv in s.levels:
            ids = np.unique(lv)
            ids = ids[ids > 0]
            np.testing.assert_array_equal(ids, np.arange(1, int(lv.max()) + 1))


@pytest.mark.parametrize("kind", KINDS)
def test_every_object_is_one_connected_region(samples, kind):
    for s in samples[kind]:
        for lv in s.levels:
            pieces = measure.label(lv.astype(np.int64), background=0, connectivity=1).max()
            assert pieces == lv.max()


@pytest.mark.parametrize("kind", KINDS)
def test_nesting_holds_for_every_pixel(samples, kind):
    for s in samples[kind]:
        for fine, coarse in itertools.pairwise(s.levels):
            inside = fine > 0
            # every pixel of a level-k object is inside some level-(k+1) object ...
            assert np.all(coarse[inside] > 0)
            # ... and all pixels of one object are inside the same one
            pairs = np.unique(np.stack([fine[inside], coarse[inside]]), axis=1)
            assert len(np.unique(pairs[0])) == pairs.shape[1]


def test_coarser_levels_really_group_objects(samples):
    # cells hold nuclei and clusters hold several cells somewhere; clusters exist for nuclei too
    cells = samples["cells"]
    assert any(s.levels[2].max() < s.levels[1].max() for s in cells)
    assert all(s.levels[1].max() >= 1 for s in cells)
    assert any(len(s.levels) == 2 for s in samples["nuclei"])
    ct_bodies = [s.levels[1].max() for s in samples["ct"]]
    assert all(b == 1 for b in ct_bodies)


# ---------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------


def test_nuclei_are_brighter_than_their_background(samples):
    for s in samples["nuclei"]:
        d = _ring_contrast(s.image, s.levels[0], background_only=True)[0]
        assert d.size > 0
        assert np.mean(d > 0) >= 0.8, "most nuclei must be brighter than the background around"
        assert np.median(d) > 0.05


def test_cell_nuclei_differ_from_surroundings(samples):
    for s in samples["cells"]:
        d = _ring_contrast(s.image, s.levels[0], background_only=False)[0]
        assert d.size > 0
        assert np.median(np.abs(d)) > 0.02
    # the cytoplasm of cells is brighter than the background outside the cells
    for s in samples["cells"]:
        d = _ring_contrast(s.image, s.levels[1], background_only=True)[0]
        assert np.median(d) > 0.02


def test_ct_organs_differ_from_surroundings_on_average(samples):
    per_image = []
    for s in samples["ct"]:
        d = _ring_contrast(s.image, s.levels[0], background_only=False)[0]
        per_image.append(np.mean(np.abs(d)))
    assert min(per_image) > 0.01
    assert np.median(per_image) > 0.05


def test_aerial_objects_differ_from_surroundings(samples):
    for s in samples["aerial"]:
        d = _ring_contrast(s.image, s.levels[0], background_only=False)
        colour_dist = np.sqrt((d**2).sum(axis=0))
        assert np.median(colour_dist) > 0.05


def test_nuclei_vary_in_size_dtype_and_range(samples):
    diam = []
    dtypes = set()
    for seed in range(40):
        s = make_sample("nuclei", (256, 256), seed)
        areas = np.bincount(s.levels[0].ravel())[1:]
        diam.append(2 * np.sqrt(np.median(areas) / np.pi))
        dtypes.add(s.image.dtype)
    assert min(diam) < 15 and max(diam) > 45, "one size regime per image, wide range over images"
    assert dtypes == {np.dtype(np.uint8), np.dtype(np.uint16)}


def test_images_are_not_flat_or_saturated(samples):
    for kind in KINDS:
        for s in samples[kind]:
            img = s.image.astype(np.float64)
            top = 255 if s.image.dtype == np.uint8 else 65535
            assert img.std() > 0
            assert np.mean(img >= top) < 0.25


# ---------------------------------------------------------------------------------------------
# Randomness and API
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_reproducible_for_a_seed_and_different_across_seeds(kind):
    a = make_sample(kind, (96, 112), 7)
    b = make_sample(kind, (96, 112), np.random.default_rng(7))
    c = make_sample(kind, (96, 112), 8)
    np.testing.assert_array_equal(a.image, b.image)
    assert len(a.levels) == len(b.levels)
    for la, lb in zip(a.levels, b.levels, strict=True):
        np.testing.assert_array_equal(la, lb)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.levels[0], c.levels[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [16, (16, 40), (300, 64)])
def test_small_and_odd_sizes(kind, size):
    s = make_sample(kind, size, 3)
    shape = (size, size) if isinstance(size, int) else size
    assert s.image.shape[:2] == shape
    assert all(lv.shape == shape for lv in s.levels)
    assert s.levels[0].max() >= 1


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(TileSAMError, match="nuclei.*cells.*ct.*aerial"):
        make_sample("xray")


@pytest.mark.parametrize("size", [8, (0, 64), (64, 15), "big", (64.5, 64), (1, 2, 3)])
def test_bad_size_is_rejected(size):
    with pytest.raises(TileSAMError, match="size"):
        make_sample("nuclei", size)


def test_stream_is_reproducible_and_follows_kinds_and_weights():
    first = list(itertools.islice(sample_stream(("nuclei", "ct"), (64, 64), seed=5), 6))
    again = list(itertools.islice(sample_stream(("nuclei", "ct"), (64, 64), seed=5), 6))
    other = list(itertools.islice(sample_stream(("nuclei", "ct"), (64, 64), seed=6), 6))
    assert [s.kind for s in first] == [s.kind for s in again]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True))
    assert {s.kind for s in first} <= {"nuclei", "ct"}
    only = [float(k == "aerial") for k in KINDS]
    only_aerial = itertools.islice(sample_stream(KINDS, (48, 48), seed=1, weights=only), 5)
    assert {s.kind for s in only_aerial} == {"aerial"}
    kinds = [s.kind for s in itertools.islice(sample_stream(size=(32, 32), seed=2), 40)]
    assert set(kinds) == set(KINDS)


def test_stream_validates_arguments_eagerly():
    with pytest.raises(TileSAMError, match="nuclei"):
        sample_stream(("nuclei", "mri"))
    with pytest.raises(TileSAMError):
        sample_stream(())
    with pytest.raises(TileSAMError, match="weights"):
        sample_stream(("nuclei", "ct"), weights=(1.0,))
    with pytest.raises(TileSAMError, match="weights"):
        sample_stream(("nuclei", "ct"), weights=(1.0, -1.0))
    with pytest.raises(TileSAMError, match="weights"):
        sample_stream(("nuclei", "ct"), weights=(0, 0))
    with pytest.raises(TileSAMError, match="size"):
        sample_stream(size=(4, 4))


def test_sample_is_frozen():
    s = make_sample("nuclei", (32, 32), 0)
    with pytest.raises(AttributeError):
        s.kind = "ct"  # type: ignore[misc]
