"""Slice-to-slice propagation: the algorithm with deterministic predictors, then end to end.

The algorithm (:mod:`tilesam.volumes.walk`) is checked with predictors whose answers are
known: an oracle that returns the true object on each slice (of the sample CT volume and of
a real MRI tumour mask), and predictors that leak, drift, doubt or grab a neighbour. The end
to end tests use randomly initialised models: their masks are meaningless, but the
mechanics (cache, shapes, ids, axes, geometry, command line, bad input) are real.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from tilesam.cache.store import EmbeddingStore
from tilesam.cli import main
from tilesam.errors import Cancelled, TileSAMError
from tilesam.io import open_image
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.samples import load_sample
from tilesam.segment.session import Session
from tilesam.volumes.propagate import propagate_mask
from tilesam.volumes.stop_rules import StopRules
from tilesam.volumes.walk import SlicePrediction, prompt_from_mask, propagate_labels

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "medical"
# Rules that stop a walk only at an empty mask: random models give arbitrary masks and scores.
NEVER_STOP = StopRules(
    min_area=1, min_score=None, min_overlap=0.0, max_growth=np.inf, min_contrast=None
)


def oracle(truth: np.ndarray, calls: list | None = None):
    """The true object most present in the prompt's box (or under its point) on slice z."""

    def predict(z, prompt):
        if calls is not None:
            calls.append((z, prompt.mask))
        if prompt.box is not None:
            y0, x0, y1, x1 = prompt.box
            ids = np.bincount(truth[z, y0:y1, x0:x1].ravel())
            obj = int(np.argmax(ids[1:])) + 1 if ids[1:].any() else 0
        else:
            obj = truth[z, int(prompt.points[0][0]), int(prompt.points[0][1])]
        mask = truth[z] == obj if obj else np.zeros(truth.shape[1:], bool)
        return SlicePrediction(mask, 0.95, prompt.mask)

    return predict


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def organs() -> np.ndarray:
    return load_sample("ct_volume")[1]


# -- the algorithm ------------------------------------------------------------------------------
def test_oracle_recovers_every_object_with_its_id(organs) -> None:
    mid = organs.shape[0] // 2
    done = []
    out = propagate_labels(
        organs.shape, {mid: organs[mid]}, oracle(organs), callback=lambda d, t: done.append((d, t))
    )
    assert out.labels.dtype == np.uint32 and out.labels.shape == organs.shape
    for obj in (1, 2, 3, 4):
        assert _dice(out.labels == obj, organs == obj) > 0.97, obj
    assert set(np.unique(out.labels)) == {0, 1, 2, 3, 4}
    # Progress: monotonic, per object, ending at the total.
    assert [d for d, _ in done] == sorted(d for d, _ in done)
    assert done[-1] == (4 * (organs.shape[0] - 1),) * 2
    # The spine spans the volume: its walks end at the range; the kidneys vanish.
    reasons = {(s.obj, s.step): s.reason for s in out.stops}
    assert reasons[(4, 1)] == reasons[(4, -1)] == "range"
    assert reasons[(2, 1)].startswith("vanished")


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real medical test data not found at {DATA}")
def test_oracle_on_a_real_tumour_mask_with_thick_slices() -> None:
    truth = (open_image(DATA / "pyradiomics_brain1_label.nrrd").read() > 0).astype(int)
    zs = np.flatnonzero(truth.any(axis=(1, 2)))
    mid = int(zs[len(zs) // 2])  # 247 pixels; its neighbours 626 and 842 (6.5 mm slices)
    strict = propagate_labels(truth.shape, {mid: truth[mid]}, oracle(truth))
    assert [s.reason.split(":")[0] for s in strict.stops] == ["leak", "leak"]
    thick = StopRules(max_growth=4.0, min_overlap=0.1)  # the documented thick-slice rules
    out = propagate_labels(truth.shape, {mid: truth[mid]}, oracle(truth), rules=thick)
    assert _dice(out.labels > 0, truth > 0) == 1.0


def _disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2


def test_leak_is_caught_not_carried_on() -> None:
    shape = (12, 64, 64)
    disc = _disc(shape[1:], (32, 32), 10)

    def leaky(z, prompt):  # from slice 8 on, the mask spills over the whole slice
        return SlicePrediction(np.ones(shape[1:], bool) if z >= 8 else disc, 0.9)

    out = propagate_labels(shape, {4: disc.astype(int)}, leaky)
    assert out.labels[:8].any(axis=(1, 2)).all() and not out.labels[8:].any()
    up = next(s for s in out.stops if s.step == 1)
    assert up.last == 7 and up.reason.startswith("leak: area 4096")


def test_jump_and_doubt_stop_the_walk() -> None:
    shape = (10, 64, 64)
    here, there = _disc(shape[1:], (20, 20), 8), _disc(shape[1:], (44, 44), 8)

    def drifting(z, prompt):  # above slice 6 the mask jumps elsewhere; below 3 the score drops
        return SlicePrediction(there if z > 6 else here, 0.2 if z < 3 else 0.9)

    out = propagate_labels(shape, {5: here.astype(int)}, drifting)
    assert np.flatnonzero(out.labels.any(axis=(1, 2))).tolist() == [3, 4, 5, 6]
    reasons = {s.step: s.reason for s in out.stops}
    assert reasons[1].startswith("jump: overlap 0.00") and reasons[-1].startswith("less sure")
    # The absolute threshold is off by default; set, it decides first.
    strict = propagate_labels(shape, {5: here.astype(int)}, drifting, rules={"min_score": 0.4})
    assert [s.reason for s in strict.stops if s.step < 0] == ["predicted IoU 0.20 < 0.4"]


def test_a_walk_stops_where_the_decoder_grows_less_sure() -> None:
    """Scores rise to 0.9 towards the middle and fall towards the ends, all above what an
    absolute 0.4 would refuse: the walk stops at the first slice under 0.8 of its highest."""
    shape = (12, 64, 64)
    disc = _disc(shape[1:], (32, 32), 10)
    scores = [0.5, 0.6, 0.66, 0.7, 0.8, 0.9, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5]

    def waning(z, prompt):
        return SlicePrediction(disc, scores[z])

    out = propagate_labels(shape, {6: disc.astype(int)}, waning)
    # Down: 0.9 at slice 5, then 0.8 (>= 0.72), 0.7 < 0.72 at slice 3.
    # Up: 0.85 at slice 7, then 0.8, 0.7 (>= 0.68), 0.6 < 0.8 x 0.85 at slice 10.
    assert np.flatnonzero(out.labels.any(axis=(1, 2))).tolist() == list(range(4, 10))
    reasons = {s.step: s.reason for s in out.stops}
    assert reasons[-1] == "less sure: predicted IoU 0.70 < 0.8 x 0.90"
    assert reasons[1] == "less sure: predicted IoU 0.60 < 0.8 x 0.85"
    rules = StopRules(min_score_ratio=None)
    off = propagate_labels(shape, {6: disc.astype(int)}, waning, rules=rules)
    assert off.labels.any(axis=(1, 2)).all()


@pytest.mark.parametrize("polarity", [1.0, -1.0])
def test_a_fading_object_ends_the_walk_where_its_contrast_goes(polarity) -> None:
    """A predictor that keeps returning the disc (as the decoder does on an out-of-focus
    ghost): with the image, the walk stops where the disc's contrast falls below 0.3 of
    its strongest, for bright and dark objects; without it, the walk runs to the ends."""
    shape = (16, 64, 64)
    disc = _disc(shape[1:], (32, 32), 10)
    strength = np.array([0.1, 0.1, 0.2, 0.35, 0.6, 0.8, 1.0, 1.0, 1.0, 0.9, 0.7, 0.5, 0.25, 0.1,
                         0.1, 0.1])  # fmt: skip
    rng = np.random.default_rng(0)
    volume = 100 + rng.normal(0, 1, shape) + polarity * 80 * strength[:, None, None] * disc

    def read(z, region):
        return volume[z][region]

    def ghost(z, prompt):
        return SlicePrediction(disc, 0.9)

    seed = {7: disc.astype(int)}
    out = propagate_labels(shape, seed, ghost, image=read)
    assert np.flatnonzero(out.labels.any(axis=(1, 2))).tolist() == list(range(3, 12))
    assert all(s.reason.startswith("faded: contrast 0.2") for s in out.stops)
    blind = propagate_labels(shape, seed, ghost)
    assert blind.labels.any(axis=(1, 2)).all()


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real medical test data not found at {DATA}")
def test_a_liver_mask_a_few_pixels_tight_is_not_taken_for_fading() -> None:
    """On a real CT the liver borders lung and fat: its contrast against a ring depends on
    where the mask's edge sits. A predictor returning the true liver shrunk by up to 4
    pixels must not end the walk as "faded" (the liver is not a distinct object)."""
    ct = open_image(DATA / "dcmqi_ct3slice" / "ct")
    liver = open_image(DATA / "dcmqi_ct3slice" / "seg" / "liver_seg.nrrd").read() > 0
    for shrink in (1, 2, 3, 4, 6):

        def tight(z, prompt, shrink=shrink):
            return SlicePrediction(ndimage.binary_erosion(liver[z], iterations=shrink), 0.95)

        out = propagate_labels(liver.shape, {0: liver[0].astype(int)}, tight, image=ct.read_slice)
        assert not any(s.reason.startswith("faded") for s in out.stops), (shrink, out.stops)
        assert out.labels[1:].any(axis=(1, 2)).all()


def test_a_touching_neighbour_is_not_taken_for_the_background() -> None:
    """Object 2, annotated on every slice, wraps around object 1 (a cell around its nucleus)
    and is as bright where it appears: in the ring around object 1 it would cancel its
    contrast and stop the walk as faded; labelled pixels are left out of the ring."""
    shape = (12, 64, 64)
    one = _disc(shape[1:], (32, 32), 9)
    two = _disc(shape[1:], (32, 32), 20) & ~_disc(shape[1:], (32, 32), 10)
    volume = 100 + np.random.default_rng(1).normal(0, 1, shape) + 80.0 * one
    volume[3:9] += 80.0 * two  # the neighbour is bright on slices 3..8
    seeds = {z: (2 * two).astype(int) for z in range(shape[0])}
    seeds[1] = seeds[1] + one  # object 1 is clicked on slice 1

    def read(z, region):
        return volume[z][region]

    out = propagate_labels(shape, seeds, lambda z, prompt: SlicePrediction(one, 0.9), image=read)
    assert not any(s.reason.startswith("faded") for s in out.stops)
    assert (out.labels == 1).any(axis=(1, 2)).all()


def test_contrast_turning_over_is_fading_too() -> None:
    """A bright object whose slice turns dark against its surroundings has faded."""
    assert StopRules().why_faded(-5.0, 40.0).startswith("faded: contrast -0.12")
    assert StopRules().why_faded(30.0, 40.0) is None
    assert StopRules().why_faded(None, 40.0) is None and StopRules().why_faded(5.0, None) is None
    assert StopRules(min_contrast=None).why_faded(-5.0, 40.0) is None  # the rule is off


def test_an_empty_mask_always_ends_the_walk() -> None:
    shape = (5, 32, 32)
    seed = {2: _disc(shape[1:], (16, 16), 5).astype(int)}
    nothing = lambda z, prompt: SlicePrediction(np.zeros(shape[1:], bool), 1.0)  # noqa: E731
    out = propagate_labels(shape, seed, nothing, rules=StopRules(min_area=0))
    assert [s.reason for s in out.stops] == ["vanished: 0 pixels < 1"] * 2


def test_objects_never_overwrite_each_other_or_annotations() -> None:
    shape = (6, 64, 64)
    one, two = _disc(shape[1:], (32, 20), 10), _disc(shape[1:], (32, 44), 10)
    seed = one.astype(np.uint32) + 7 * two  # ids 1 and 7
    grabby = _disc(shape[1:], (32, 40), 14)  # object 7's prediction covers part of object 1

    def predict(z, prompt):
        y, x = prompt.points[0]
        return SlicePrediction(one if x < 32 else grabby, 0.9)

    out = propagate_labels(shape, {2: seed}, predict, rules=dataclasses.replace(
        StopRules(), min_overlap=0.0, max_growth=10.0))  # fmt: skip
    np.testing.assert_array_equal(out.labels[2], seed)  # the annotated slice as given
    for z in (0, 1, 3, 4, 5):
        assert (out.labels[z][one] == 1).all()  # object 1 (first) keeps its pixels
        assert (out.labels[z] == 7).sum() == (grabby & ~one).sum()


def test_gap_between_annotations_is_filled_from_both_sides(organs) -> None:
    spine = (organs == 4).astype(int)
    calls: list = []
    out = propagate_labels(
        spine.shape, {10: spine[10], 21: spine[21]}, oracle(spine, calls),
        states={(1, 10): "from 10", (1, 21): "from 21"}, slice_range=(5, 30),
        method="prompt+logits",
    )  # fmt: skip
    inside = {z: state for z, state in calls if 10 < z < 21}
    # Each slice of the gap comes from its nearer annotation, in turns from both ends.
    assert all(inside[z] == ("from 10" if z <= 15 else "from 21") for z in range(11, 21))
    assert [z for z, _ in calls if 10 < z < 21] == [11, 20, 12, 19, 13, 18, 14, 17, 15, 16]
    assert not out.labels[:5].any() and not out.labels[30:].any()  # the slice range caps
    assert out.labels[5:30].all(axis=0).sum() == 0 or out.labels[5:30].any(axis=(1, 2)).all()
    annotated = [z for z, _ in calls if z in (10, 21)]
    assert annotated == []  # annotated slices are never predicted


def test_largest_component_and_range_errors() -> None:
    shape = (8, 48, 48)
    disc = _disc(shape[1:], (24, 24), 8)
    island = _disc(shape[1:], (6, 6), 3)

    def predict(z, prompt):
        return SlicePrediction(disc | island if z == 6 else disc, 0.9)

    seed = {3: disc.astype(int)}
    kept = propagate_labels(shape, seed, predict, largest_component=True)
    assert not kept.labels[6][island].any() and kept.labels[6][disc].all()
    # An id near 2**32 is boxed on its own (find_objects would list every id below it).
    top = {3: disc.astype(np.uint32) * (2**32 - 1)}
    kept = propagate_labels(shape, top, predict, largest_component=True)
    assert not kept.labels[6][island].any() and (kept.labels[6][disc] == 2**32 - 1).all()
    assert propagate_labels(shape, seed, predict).labels[6][island].all()
    with pytest.raises(TileSAMError, match=r"Annotated slice\(s\) \[3\] lie outside"):
        propagate_labels(shape, seed, predict, slice_range=(4, 8))
    with pytest.raises(TileSAMError, match="seed mask is empty"):
        propagate_labels(shape, {3: np.zeros(shape[1:], int)}, predict)
    with pytest.raises(TileSAMError, match="Unknown method 'mask'"):
        propagate_labels(shape, seed, predict, method="mask")


def test_cancel_raises_and_callback_sees_every_slice() -> None:
    shape = (10, 32, 32)
    disc = _disc(shape[1:], (16, 16), 6)
    stop = threading.Event()
    seen = []

    def callback(done, total):
        seen.append(done)
        if done == 3:
            stop.set()

    with pytest.raises(Cancelled, match="cancelled"):
        propagate_labels(shape, {5: disc.astype(int)}, lambda z, p: SlicePrediction(disc, 1.0),
                         callback=callback, cancel=stop)  # fmt: skip
    assert seen == [1, 2, 3] and issubclass(Cancelled, TileSAMError)


def test_prompts_from_a_mask() -> None:
    ring = _disc((64, 64), (32, 32), 20) & ~_disc((64, 64), (32, 32), 10)
    p = prompt_from_mask(ring, "prompt+logits", state="logits")
    assert p.labels.tolist() == [1, 0] and p.mask == "logits"
    # By default the logits stay behind: they make the decoder copy the previous mask.
    assert prompt_from_mask(ring, state="logits").mask is None
    assert ring[tuple(p.points[0].astype(int))] and not ring[tuple(p.points[1].astype(int))]
    assert p.box == (11, 11, 54, 54)  # the ring's box (13..52), grown by 5 % per side
    assert prompt_from_mask(ring, "box").points.shape == (0, 2)
    only_points = prompt_from_mask(ring, "points", state="logits")
    assert only_points.box is None and only_points.mask is None


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ct(tmp_path_factory) -> Path:
    """A small NIfTI volume with a bright ellipsoid, a flipped direction and an origin."""
    zz, yy, xx = np.mgrid[:7, :48, :64]
    rng = np.random.default_rng(0)
    hu = rng.normal(40, 10, (7, 48, 64))
    hu[((zz - 3) / 3) ** 2 + ((yy - 24) / 12) ** 2 + ((xx - 30) / 15) ** 2 < 1] = 300
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing((0.7, 0.7, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))  # as from a RAS-stored NIfTI
    path = tmp_path_factory.mktemp("vol") / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def test_propagate_mask_ids_shapes_axes_and_cache(ct, model, tmp_path) -> None:
    vol = open_image(ct).read()
    original = vol.copy()
    seed = np.zeros(vol.shape, np.uint16)
    seed[3, 16:32, 20:40] = 5
    seed[3, 40:46, 50:60] = 9
    cache = tmp_path / "ct.zarr"
    labels = propagate_mask(vol, model, mask=seed, cache=cache, rules=NEVER_STOP)
    assert labels.shape == vol.shape and labels.dtype == np.uint32
    np.testing.assert_array_equal(labels[3], seed[3])  # the annotated slice as given
    assert set(np.unique(labels)) <= {0, 5, 9}
    np.testing.assert_array_equal(vol, original)  # the user's volume is never changed
    store = EmbeddingStore.open(cache)
    # Lazily: every slice predicted is embedded once; the annotated one is never needed.
    assert store.missing_tiles() == [(3, 0, 0)]
    again = propagate_mask(vol, model, mask=seed, cache=cache, rules=NEVER_STOP)
    np.testing.assert_array_equal(again, labels)  # from the cache, identical
    # Along another axis: the planes are (z, x) rows of y; the result has the volume's shape.
    side = np.zeros(vol.shape, np.uint8)
    side[2:5, 24, 20:40] = 3
    across = propagate_mask(vol, model, mask=side, axis=1, rules=NEVER_STOP)
    assert across.shape == vol.shape
    np.testing.assert_array_equal(across[:, 24], side[:, 24])


def test_tiled_slices_pass_logits_tile_by_tile(model) -> None:
    """Slices larger than the model input are tiled; each tile's logits feed the same tile of
    the next slice."""
    rng = np.random.default_rng(2)
    vol = rng.integers(100, 200, (4, 300, 400)).astype(np.uint16)
    vol[:, 100:220, 150:300] += 800  # an object across the tile borders of a 2 x 2 grid
    session = Session(vol, model, halo=32)
    assert session.grid_shape == (4, 2, 2)
    first, logits = session.segment_with_logits(box=(100, 150, 220, 300), z=1)
    assert set(logits) == {v.tile for v in first.tiles}
    assert all(v.shape == (64, 64) for v in logits.values())  # the decoder's low-res grid
    plain, _ = session.segment_with_logits(box=(100, 150, 220, 300), z=2)
    guided, _ = session.segment_with_logits(box=(100, 150, 220, 300), z=2, mask_inputs=logits)
    assert plain.score != guided.score  # the mask input reaches the decoder
    seed = np.zeros(vol.shape, np.uint8)
    seed[1] = first.mask
    labels = propagate_mask(vol, session=session, mask=seed, rules=NEVER_STOP)
    np.testing.assert_array_equal(labels[1], first.mask)
    # Slices 0, 2, 3 all embedded, every tile (slice 1, the seed, only where it was prompted).
    assert [tile for tile in session.store.missing_tiles() if tile[0] != 1] == []


def test_propagate_from_clicks_cancel_and_callback(ct, model) -> None:
    progress = []
    labels = propagate_mask(ct, model, points=[(3, 24, 30), (3, 5, 5)], labels=[1, 0],
                            rules=NEVER_STOP, callback=lambda *a: progress.append(a))  # fmt: skip
    assert labels.shape == (7, 48, 64) and labels[3].any()
    assert set(np.unique(labels)) <= {0, 1} and progress[-1] == (6, 6)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        propagate_mask(ct, model, box=(3, 10, 10, 40, 50), cancel=stop, rules=NEVER_STOP)


def test_bad_input(ct, model, tmp_path) -> None:
    vol = open_image(ct).read()
    with pytest.raises(TileSAMError, match="2D image; propagation needs a volume"):
        propagate_mask(vol[0], model, points=[(0, 5, 5)])
    with pytest.raises(TileSAMError, match="seed mask is empty"):
        propagate_mask(vol, model, mask=np.zeros(vol.shape, np.uint8))
    with pytest.raises(TileSAMError, match="needs the same \\(Z, Y, X\\) shape"):
        propagate_mask(vol, model, mask=np.ones((7, 48, 63), np.uint8))
    with pytest.raises(TileSAMError, match="either a seed mask or points"):
        propagate_mask(vol, model, mask=np.ones(vol.shape, np.uint8), points=[(1, 2, 3)])
    with pytest.raises(TileSAMError, match="Unknown CT window 'abdomen'"):
        propagate_mask(vol, model, points=[(3, 24, 30)], window="abdomen")
    with pytest.raises(TileSAMError, match="labels were given without points"):
        propagate_mask(vol, model, box=(3, 10, 10, 40, 50), labels=[1])
    with pytest.raises(TileSAMError, match="Slice 9 is outside"):
        propagate_mask(vol, model, points=[(9, 24, 30)])
    with pytest.raises(TileSAMError, match="has one slice: there is nothing to propagate to"):
        propagate_mask(vol[:1], model, points=[(0, 24, 30)])
    big = np.zeros(vol.shape, np.uint64)
    big[3, 10:20, 10:20] = 2**32 + 1
    with pytest.raises(TileSAMError, match=r"id above 2\*\*32 - 1 \(4294967297\)"):
        propagate_mask(vol, model, mask=big)
    # A seed on another grid (same shape, other origin, spacing or direction) belongs to
    # another scan; the message says what differs.
    source = sitk.ReadImage(str(ct))
    spacing, origin = source.GetSpacing(), source.GetOrigin()
    turned = np.array(source.GetDirection()).reshape(3, 3) @ _rotation_about_z(1.0)
    for field, change in [
        ("origin", lambda s: s.SetOrigin((0.0, 0.0, 0.0))),
        ("spacing", lambda s: s.SetSpacing(tuple(v * 1.001 for v in spacing))),
        ("direction", lambda s: s.SetDirection(tuple(turned.ravel()))),
    ]:
        seed = source > 200
        seed.SetOrigin(origin if origin != (0.0, 0.0, 0.0) else (1.0, 0.0, 0.0))
        change(seed)
        sitk.WriteImage(seed, str(tmp_path / "seed.nii.gz"))
        with pytest.raises(TileSAMError, match=f"grid differs from the volume's \\({field} "):
            propagate_mask(ct, model, mask=tmp_path / "seed.nii.gz")


def _rotation_about_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# -- command line -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random0.pt"
    torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), path)
    return path


def test_cli_writes_labels_with_the_source_geometry(ct, checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "labels.nii.gz"
    argv = ["propagate", str(ct), "--checkpoint", str(checkpoint), "--cache",
            str(tmp_path / "c.zarr"), "--point", "3,24,30", "--point", "3,2,2,0", "--out",
            str(out), "--window", "400,40", "--min-score", "0.5"]  # fmt: skip
    # (A random model's predicted IoU is about 0: the walks stop at once, the labels hold
    # the clicked slice only, and the run says so.)
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "object(s)" in captured.out and "within two slices of the seed" in captured.err
    source, written = sitk.ReadImage(str(ct)), sitk.ReadImage(str(out))
    assert written.GetSize() == source.GetSize()
    for get in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(written, get)(), getattr(source, get)(), atol=1e-6)
    # A seed mask on the same grid, written by another run, propagates too.
    seeded = tmp_path / "seeded.nrrd"
    argv = ["propagate", str(ct), "--checkpoint", str(checkpoint), "--cache",
            str(tmp_path / "c.zarr"), "--mask", str(out), "--out", str(seeded),
            "--window", "400,40", "--range", "1,6", "--no-fade-rule"]  # fmt: skip
    assert main(argv) == 0 and seeded.is_file()
    # Coronal planes (axis 1): the box is (y, z0, x0, z1, x1); the labels keep the geometry.
    side = tmp_path / "side.mha"
    argv = ["propagate", str(ct), "--checkpoint", str(checkpoint), "--cache",
            str(tmp_path / "side.zarr"), "--axis", "1", "--box", "24,1,20,6,40", "--out",
            str(side)]  # fmt: skip
    assert main(argv) == 0
    assert open_image(side).shape == (7, 48, 64) and open_image(side).spacing[0] == 2.5


@pytest.mark.parametrize(
    ("extra", "message"),
    [("--point 3,24,30 --window lungs", "Unknown CT window 'lungs'"),
     ("--point 3,24 ", "Could not read z,y,x"),
     ("--mask {bad}", r"grid differs from the volume.s \(spacing"),
     ("", "Nothing to propagate")],
)  # fmt: skip
def test_cli_bad_input_leaves_no_file(ct, checkpoint, tmp_path, capsys, extra, message) -> None:
    bad = tmp_path / "bad.nii.gz"
    image = sitk.ReadImage(str(ct)) > 200
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(bad))
    out = tmp_path / "out.nii.gz"
    argv = (f"propagate {ct} --checkpoint {checkpoint} --cache {tmp_path}/c.zarr --out {out} "
            + extra.format(bad=bad)).split()  # fmt: skip
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() and not list(tmp_path.glob("*.partial-*"))


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real medical test data not found at {DATA}")
def test_cli_on_a_real_dicom_ct_with_a_liver_seed(tmp_path, capsys) -> None:
    """The reference checkpoint of the test suite (small ViT encoder, official format)."""
    ckpt = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "sam1_small_fp16.pth"
    seed = sitk.ReadImage(str(DATA / "dcmqi_ct3slice" / "seg" / "liver_seg.nrrd"))
    array = sitk.GetArrayFromImage(seed)
    array[[0, 2]] = 0  # the liver annotated on the middle slice only
    middle = sitk.GetImageFromArray(array)
    middle.CopyInformation(seed)
    sitk.WriteImage(middle, str(tmp_path / "seed.nrrd"))
    out = tmp_path / "liver.nii.gz"
    argv = ["propagate", str(DATA / "dcmqi_ct3slice" / "ct"), "--checkpoint", str(ckpt),
            "--cache", str(tmp_path / "ct.zarr"), "--mask", str(tmp_path / "seed.nrrd"),
            "--window", "soft-tissue", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    written, ct = open_image(out), open_image(DATA / "dcmqi_ct3slice" / "ct")
    np.testing.assert_allclose(written.spacing, ct.spacing, atol=1e-5)
    np.testing.assert_allclose(written.origin, ct.origin, atol=1e-4)
    np.testing.assert_array_equal(written.read()[1], array[1])  # the annotation, as given
    assert ndimage.sum(written.read() > 0) >= array[1].sum()
