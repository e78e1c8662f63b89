"""Shape-based interpolation between annotated slices: the model-free method, and the gaps
two walks leave between them (issue 24: walks on unfamiliar volumes stop early)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from tilesam.cli import main
from tilesam.errors import TileSAMError, TileSAMWarning
from tilesam.io import open_image
from tilesam.volumes.interpolate import between
from tilesam.volumes.propagate import propagate_mask
from tilesam.volumes.walk import SlicePrediction, propagate_labels

SHAPE = (25, 64, 72)


def _ellipsoid(centre, radii, shape=SHAPE) -> np.ndarray:
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip((z, y, x), centre, radii)) < 1.0


def _tube(shape=SHAPE) -> np.ndarray:
    """A tube through every slice whose section slides and widens steadily (a vessel):
    what shape-based interpolation restores exactly, since its outline moves linearly."""
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    t = z / (shape[0] - 1)
    return (y - 20 - 20 * t) ** 2 + (x - 24 - 18 * t) ** 2 < (6 + 10 * t) ** 2


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _refusing(z, prompt):  # a model that must not be asked
    raise AssertionError(f"the model was asked for slice {z}")


def _write_nifti(path, array, spacing=(2.0, 0.7, 0.9)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[::-1])
    image.SetOrigin((-10.0, 5.0, 30.0))
    sitk.WriteImage(image, str(path))
    return path


def _between_placed(truth, a, b):
    placed = np.zeros((b - a - 1, *truth.shape[1:]), bool)
    for i, (mask, window) in enumerate(between(truth[a], truth[b], b - a - 1)):
        placed[i][window] = mask
    return placed


def test_the_masks_between_two_sections_are_the_sections_between():
    tube = _tube()
    assert _dice(_between_placed(tube, 0, 24), tube[1:24]) > 0.97  # the whole length
    # A round body of two lobes, annotated every fourth slice as a user would: its sections
    # grow, shrink and slide; the outline between two is not linear, but close to it.
    body = _ellipsoid((12, 30, 34), (11, 20, 26)) | _ellipsoid((12, 38, 44), (8, 14, 12))
    for a in (4, 8, 12, 16):
        assert _dice(_between_placed(body, a, a + 4), body[a + 1 : a + 4]) > 0.9, a


def test_a_shape_whose_centre_lies_outside_it_does_not_vanish_between():
    """Two bars (centre of mass between them, outside both) and a block touching a corner:
    laid on each other by their centres, the mix is empty; then they are mixed in place."""
    block = np.zeros((20, 30), bool)
    block[0:6, 0:8] = True
    bars = np.zeros((20, 30), bool)
    bars[0:2], bars[18:20] = True, True
    for first, second in ((block, bars), (bars, block)):
        steps = between(first, second, 3)
        assert all(mask.any() for mask, _ in steps)
        placed = np.zeros((3, 20, 30), bool)
        for i, (mask, window) in enumerate(steps):
            placed[i][window] = mask
        assert placed[0, 0:2, 0:8].all()  # where the block and the top bar meet, kept


def test_an_object_of_two_pieces_keeps_both_between():
    """Two pieces under one id, one growing: the other stays where it is, whole."""
    left = np.zeros((40, 100), bool)
    left[15:25, 5:15] = True
    lower, upper = left.copy(), left.copy()
    lower[15:25, 80:90], upper[15:28, 80:93] = True, True
    for mask, window in between(lower, upper, 3):
        placed = np.zeros(lower.shape, bool)
        placed[window] = mask
        assert np.array_equal(placed[:, :50], left[:, :50])
        assert 100 <= placed[:, 50:].sum() <= 169


def test_interpolation_fills_between_annotations_only_and_asks_no_model():
    liver = _ellipsoid((12, 30, 30), (10, 20, 22))
    kidney = _ellipsoid((12, 30, 56), (9, 9, 8)) & ~liver  # pressed against it
    truth = liver.astype(np.uint32) + 2 * kidney
    seeds = {z: truth[z].copy() for z in (3, 9, 16, 21)}  # the kidney is on 9 and 16 of them
    out = propagate_labels(SHAPE, seeds, _refusing, method="interpolate")
    for z, seed in seeds.items():  # annotations are kept exactly
        assert np.array_equal(out.labels[z], seed)
    assert _dice(out.labels == 1, liver) > 0.9
    assert not out.labels[:3].any() and not out.labels[22:].any()  # nothing beyond them
    assert _dice(out.labels[9:17] == 2, kidney[9:17]) > 0.85
    assert not (out.labels == 2)[:9].any() and not (out.labels == 2)[17:].any()
    assert out.stops == []


def test_an_object_annotated_on_one_slice_cannot_be_interpolated():
    seeds = {5: np.zeros(SHAPE[1:], np.uint32), 9: np.zeros(SHAPE[1:], np.uint32)}
    seeds[5][10:20, 10:20], seeds[9][10:20, 10:20], seeds[9][40:50, 40:50] = 1, 1, 7
    with pytest.raises(TileSAMError, match=r"object\(s\) 7 are annotated on one slice only"):
        propagate_labels(SHAPE, seeds, _refusing, method="interpolate")


def test_a_cancelled_interpolation_returns_nothing():
    import threading

    from tilesam.errors import Cancelled

    tube, cancel = _tube(), threading.Event()
    seeds = {z: tube[z].astype(np.uint32) for z in (2, 12, 22)}

    def count(done, total):  # the first gap filled: cancel before the second
        cancel.set()

    with pytest.raises(Cancelled):
        propagate_labels(SHAPE, seeds, _refusing, method="interpolate", callback=count,
                         cancel=cancel)  # fmt: skip


def _stops_after(n_slices: int, truth: np.ndarray):
    """A model that answers `n_slices` slices from each annotated slice, then gives up."""
    asked: dict[int, int] = {}

    def predict(z, prompt):
        asked[z] = asked.get(z, 0) + 1
        near = min(abs(z - 4), abs(z - 20))
        return SlicePrediction(truth[z] if near <= n_slices else truth[z] & False, 0.9)

    return predict


@pytest.mark.parametrize("fill", [True, False])
def test_the_gap_two_stopped_walks_leave_between_annotations_is_interpolated(fill):
    truth = _tube()
    seeds = {4: truth[4].astype(np.uint32), 20: truth[20].astype(np.uint32)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TileSAMWarning)
        out = propagate_labels(SHAPE, seeds, _stops_after(1, truth), fill_gaps=fill)
    found = out.labels == 1
    assert np.array_equal(found[[3, 4, 5, 19, 20, 21]], truth[[3, 4, 5, 19, 20, 21]])
    between_walks = [s for s in out.stops if s.reason.startswith("vanished") and 4 < s.last < 20]
    assert len(between_walks) == 2
    if fill:
        assert _dice(found[6:19], truth[6:19]) > 0.95
        assert all(s.filled == (6, 18) and not s.early for s in between_walks)
        assert "slices 6 to 18 were interpolated" in between_walks[0].describe()
    else:
        assert not found[6:19].any()
        assert all(s.filled is None for s in between_walks)
    # Walks stopped a slice from their seed: early, unless the gap behind them was filled.
    early = [w for w in caught if "within two slices" in str(w.message)]
    assert len(early) == 1 and ("towards higher slices: stopped after slice 5" in str(
        early[0].message)) is not fill  # fmt: skip


def test_interpolation_never_takes_another_object_s_pixels():
    first = _ellipsoid((12, 30, 30), (12, 20, 20))
    second = _ellipsoid((12, 30, 44), (12, 20, 20)) & ~first
    seeds = {}
    for z in (2, 22):
        seeds[z] = (first[z] * 1 + second[z] * 2).astype(np.uint32)
    seeds[12] = (second[12] * 2).astype(np.uint32)  # object 2 also annotated in the middle
    seeds[12][first[12] & ~second[12]] = 0
    out = propagate_labels(SHAPE, seeds, _refusing, method="interpolate")
    annotated = seeds[12] > 0
    assert np.array_equal(out.labels[12][annotated], seeds[12][annotated])
    assert (out.labels[12] == 1).any()  # object 1 crosses slice 12 where it is free
    overlap = (out.labels == 1) & second
    assert overlap[3:12].sum() < 0.02 * second[3:12].sum()


def test_the_cli_interpolates_a_seed_file_and_keeps_the_geometry(tmp_path, capsys):
    truth = _tube()
    volume = (40 + 80 * truth).astype(np.int16)
    seeds = np.zeros(SHAPE, np.uint8)
    seeds[[3, 12, 21]] = truth[[3, 12, 21]]
    image = _write_nifti(tmp_path / "ct.nii.gz", volume)
    seed = _write_nifti(tmp_path / "seed.nii.gz", seeds)
    out = tmp_path / "labels.nii.gz"
    main(["propagate", str(image), "--mask", str(seed), "--method", "interpolate",
          "--out", str(out), "--cache", str(tmp_path / "c.zarr")])  # fmt: skip
    labels = open_image(out)
    assert labels.spacing == pytest.approx(open_image(image).spacing)
    written = labels.read() > 0
    assert _dice(written[3:22], truth[3:22]) > 0.95
    assert not written[:3].any() and not written[22:].any()


def test_propagate_mask_interpolates_prompts_given_on_two_slices():
    truth = _ellipsoid((12, 30, 34), (11, 22, 26))
    volume = (40 + 80 * truth).astype(np.float32)
    # A click on each of two slices, answered by the bundled model, then interpolated.
    labels = propagate_mask(volume, points=[(6, 30, 34), (18, 30, 34)], method="interpolate")
    found = labels > 0
    assert not found[:6].any() and not found[19:].any()
    areas = found.sum(axis=(1, 2))
    low, high = sorted((areas[6], areas[18]))
    assert low > 0 and all(0.8 * low <= a <= 1.2 * high for a in areas[7:18])
