"""Memory propagation (SAM 2.1): ``propagate_mask(..., method="memory")``.

The fixture checkpoint (``tests/data/fixtures/sam2_small_fp16.pt``) has random weights:
these tests assert behaviour (the same masks as the tracker run by hand over the session's
embeddings, both directions, independent objects, a bounded bank, stops, refusals), not
mask quality. Its masks cover most of a slice, so most tests loosen the stop rules.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import tilesam
from tilesam.cli import main
from tilesam.errors import TileSAMError, TileSAMWarning
from tilesam.models.loading import load_model
from tilesam.models.sam2_model import Sam2Model
from tilesam.models.sam2_tracker import Sam2Tracker
from tilesam.segment.session import Session
from tilesam.volumes import memory
from tilesam.volumes.stops import Stop

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
CHECKPOINT = FIXTURES / "sam2_small_fp16.pt"
# Every rule that the random model's masks would break, off (an empty mask still stops).
LOOSE = {
    "min_area": 0,
    "min_score_ratio": None,
    "min_overlap": 0.0,
    "max_growth": 1e9,
    "min_contrast": None,
}
CLICK = (120, 160)  # (y, x) inside the fixture frames' object


@pytest.fixture(scope="module")
def model() -> Sam2Model:
    torch.set_num_threads(1)
    # float32 on every machine: where the fixture's random model loses object 2 (a stop
    # these tests check) depends on its outputs' last digits, which bfloat16 moves.
    return load_model(checkpoint=CHECKPOINT, device="cpu", precision="float32")


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """20 slices of 240 x 320: the fixture's 8 video frames, back, and forth again."""
    with np.load(FIXTURES / "sam2_small_reference.npz") as npz:
        frames = npz["frames_jpeg_decoded"].mean(-1).astype(np.uint8)
    return np.concatenate([frames, frames[::-1], frames[:4]])


@pytest.fixture(scope="module")
def session(model, volume) -> Session:
    """In memory: each slice is embedded once, on first use, for every test."""
    return Session(volume, model)


class Recorder(Sam2Tracker):
    """A Sam2Tracker that keeps the tracks it makes (to look into their banks)."""

    made: list = []

    def new_track(self):
        track = super().new_track()
        Recorder.made.append(track)
        return track


@pytest.fixture
def recorder(monkeypatch) -> type[Recorder]:
    import tilesam.models.sam2_tracker as trackers

    Recorder.made = []
    monkeypatch.setattr(trackers, "Sam2Tracker", Recorder)
    return Recorder


def _by_hand(model, session, z_seed, annotate, up, down, memory_frames=None):
    """The tracker over the session's embeddings: one track up from `z_seed`, one down;
    `annotate(tracker, track, z, embedding)` prompts the seed. Masks per slice."""
    tracker = Sam2Tracker(model, num_frames=session.source.n_slices, max_recent=memory_frames)
    masks = {}
    for slices, reverse in ((up, False), (down, True)):
        track = tracker.new_track()
        masks[z_seed] = annotate(tracker, track, z_seed, session.embedding(z_seed, 0, 0))
        for z in slices:
            step = tracker.step(track, z, session.embedding(z, 0, 0), reverse=reverse)
            masks[z] = step.mask()
    return masks


def test_memory_is_the_default_and_equals_the_tracker_by_hand(model, session, volume) -> None:
    """A click on slice 3: up to 5 and down to 1 (the range), both directions bit for bit
    the tracker's masks over the same embeddings; the seed is the tracker's answer."""
    result = tilesam.propagate_mask(
        volume, session=session, points=[(3, *CLICK)], rules=LOOSE, slice_range=(1, 6),
        memory_frames=2, details=True,
    )  # fmt: skip

    def click(tracker, track, z, embedding):
        return tracker.annotate(track, z, embedding, points=[CLICK], labels=[1]).mask()

    hand = _by_hand(model, session, 3, click, (4, 5), (2, 1), memory_frames=2)
    for z in range(20):
        expected = hand[z] if z in hand else np.zeros(volume.shape[1:], bool)
        np.testing.assert_array_equal(result.labels[z] == 1, expected, err_msg=f"slice {z}")
    assert result.labels.dtype == np.uint32 and set(np.unique(result.labels)) == {0, 1}
    assert [(s.step, s.last, s.reason) for s in result.stops] == [(1, 5, "range"), (-1, 1, "range")]


def test_two_objects_each_with_its_own_track(model, session, volume, recorder) -> None:
    """Two objects of a seed mask: each the tracker's own masks, by hand with a track of
    its own; object 2 gets what object 1 leaves, and stops where nothing is left."""
    seed = np.zeros(volume.shape, np.uint32)
    seed[3, 100:140, 140:180] = 1
    seed[3, 200:230, 10:60] = 2
    with pytest.warns(TileSAMWarning, match="object 2, towards higher slices"):
        result = tilesam.propagate_mask(
            volume, session=session, mask=seed, rules=LOOSE, slice_range=(2, 5),
            method="memory", details=True,
        )  # fmt: skip
    hands = {}
    for obj in (1, 2):

        def with_mask(tracker, track, z, embedding, obj=obj):
            tracker.annotate(track, z, tracker.frame(embedding), mask=seed[z] == obj)
            return seed[z] == obj

        hands[obj] = _by_hand(model, session, 3, with_mask, (4,), (2,))
    np.testing.assert_array_equal(result.labels[3], seed[3])  # annotations kept as given
    for z in (2, 4):
        np.testing.assert_array_equal(result.labels[z] == 1, hands[1][z])
        # Where nothing is left for object 2 its walk stops (vanished): nothing written.
        np.testing.assert_array_equal(result.labels[z] == 2, hands[2][z] & ~hands[1][z])
    assert not np.array_equal(hands[1][4], hands[2][4])  # the tracks differ
    assert len(recorder.made) == 4  # two objects, a track per direction each
    # On the padded slice (240 x 320 at 3 x in the 1024 input) the mask is placed where
    # the slice lies in the input: the prompted frame's mask is the seed again.
    prompted = recorder.made[0].prompted[3]
    assert prompted.input_size == (721, 961)
    assert (prompted.mask() == (seed[3] == 1)).mean() > 0.995
    for stop in result.stops:
        assert stop.reason == "range" or stop.reason.startswith("vanished"), stop


def test_the_bank_stays_bounded_along_20_slices(model, session, volume, recorder) -> None:
    sizes = {}

    def callback(done, total):
        up = recorder.made[1]  # made[0] answered the click; the walk up takes every slice
        sizes[done] = (up.bank.nbytes, len(up.bank), len(up.bank.recent))

    labels = tilesam.propagate_mask(
        volume, session=session, points=[(0, *CLICK)], rules=LOOSE, memory_frames=2,
        callback=callback,
    )  # fmt: skip
    assert (labels > 0).reshape(20, -1).any(1).all()
    assert sorted(sizes) == list(range(1, 20))
    bank = recorder.made[1].bank
    assert list(bank.conditioning) == [0]
    assert len(bank.recent) == 15  # object pointers: SAM 2.1 reads 15
    assert [t for t, m in bank.recent.items() if m.features is not None] == [18, 19]
    # Flat once the pointers are full (16 memories): slices 15 to 19 hold the same bytes.
    assert sizes[15] == sizes[17] == sizes[19] == (bank.nbytes, 16, 15)
    assert sizes[15][0] < 3 * 2**20  # two spatial memories and 16 pointers


def test_stops_are_recorded_and_explained(model, session, volume, monkeypatch) -> None:
    """An object the score calls absent stops there; a rule stops a walk as today."""
    step = Sam2Tracker.step

    def absent_above_3(self, track, frame, embedding, reverse=False):
        result = step(self, track, frame, embedding, reverse=reverse)
        return dataclasses.replace(result, object_score=-3.0) if frame > 3 else result

    monkeypatch.setattr(Sam2Tracker, "step", absent_above_3)
    with pytest.warns(TileSAMWarning, match="within two slices"):
        result = tilesam.propagate_mask(
            volume, session=session, points=[(3, *CLICK)], rules={**LOOSE, "max_growth": 1.1},
            slice_range=(1, 6), details=True,
        )  # fmt: skip
    up, down = result.stops
    assert (up.step, up.last, up.reason) == (1, 3, "absent: object score -3.00 <= 0")
    assert "object score says the object is not on that slice" in up.describe()
    assert (down.step, down.last) == (-1, 3) and down.reason.startswith("leak: area")
    assert "--max-growth" in down.describe()
    assert (result.labels > 0).reshape(20, -1).any(1).nonzero()[0].tolist() == [3]


def test_an_absent_stop_is_explained() -> None:
    stop = Stop(2, -1, 9, "absent: object score -1.50 <= 0", seed=12)
    text = stop.describe()
    assert text.startswith("object 2, towards lower slices: stopped after slice 9")
    assert "slice 8 broke a rule (absent" in text and "annotate it there" in text


def test_bad_requests_are_refused(model, session, volume, monkeypatch) -> None:
    ct = np.random.default_rng(0).integers(0, 255, (3, 32, 32)).astype(np.uint8)
    with pytest.raises(TileSAMError, match="method='memory' needs a SAM 2.1 model"):
        tilesam.propagate_mask(ct, "tiny", points=[(1, 16, 16)], method="memory")
    with pytest.raises(TileSAMError, match="Unknown method 'video'"):
        tilesam.propagate_mask(ct, "tiny", points=[(1, 16, 16)], method="video")
    with pytest.raises(TileSAMError, match="memory_frames .* 1 to 15"):
        tilesam.propagate_mask(volume, session=session, points=[(3, *CLICK)], memory_frames=0)
    tiled = Session(volume, model, tile_size=256, halo=16)
    with pytest.raises(TileSAMError, match="one tile for now: these slices are 240 x 320"):
        tilesam.propagate_mask(volume, session=tiled, points=[(3, *CLICK)], method="memory")
    assert tiled.n_done == 0  # refused before any work
    with pytest.warns(TileSAMWarning, match="propagated with method='prompt'"):
        assert memory.resolve_method(None, tiled) == "prompt"  # the default falls back
    annotate = Sam2Tracker.annotate

    def nothing_there(self, *args, **kwargs):
        return dataclasses.replace(annotate(self, *args, **kwargs), object_score=-2.0)

    with monkeypatch.context() as patch:
        patch.setattr(Sam2Tracker, "annotate", nothing_there)
        with pytest.raises(TileSAMError, match="prompt on slice 3 finds no object there"):
            tilesam.propagate_mask(volume, session=session, points=[(3, *CLICK)])


def test_a_bank_larger_than_the_volume_is_fine(session, volume) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TileSAMWarning)
        labels = tilesam.propagate_mask(
            volume, session=session, points=[(3, *CLICK)], rules=LOOSE, slice_range=(2, 5),
            memory_frames=15,
        )  # fmt: skip
    assert (labels[2:5] > 0).reshape(3, -1).any(1).all() and not labels[5:].any()


def test_command_line_defaults_to_memory_for_sam2(volume, tmp_path, capsys, monkeypatch) -> None:
    calls = []
    step = Sam2Tracker.step

    def counted(self, *args, **kwargs):
        calls.append(args[1])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Sam2Tracker, "step", counted)
    tifffile.imwrite(tmp_path / "v.tif", volume[:4], photometric="minisblack")
    argv = ["propagate", str(tmp_path / "v.tif"), "--checkpoint", str(CHECKPOINT)]
    argv += ["--cache", str(tmp_path / "c.zarr"), "--point", "1,120,160", "--range", "0,3"]
    argv += ["--min-area", "0", "--min-score-ratio", "0", "--min-overlap", "0"]
    argv += ["--max-growth", "1e9", "--no-fade-rule", "--memory-frames", "1"]
    assert main([*argv, "--out", str(tmp_path / "out.tif")]) == 0
    assert sorted(calls) == [0, 2]  # the tracker took both neighbours
    assert "object 1, towards higher slices: reached slice 2" in capsys.readouterr().out
    assert tifffile.imread(tmp_path / "out.tif").shape == (4, 240, 320)


@pytest.mark.parametrize("fill", [True, False])
def test_the_gap_two_stopped_tracks_leave_is_interpolated(session, volume, fill) -> None:
    """Two annotated slices, every walk stopped at once: the slices between are the two
    masks interpolated (or, with fill_gaps=False, left empty), and the stops say so."""
    with pytest.warns(TileSAMWarning, match="within two slices"):  # the outer walks
        result = tilesam.propagate_mask(
            volume, session=session, points=[(2, *CLICK), (7, *CLICK)], fill_gaps=fill,
            rules={**LOOSE, "min_area": 10**9}, slice_range=(1, 9), details=True,
        )  # fmt: skip
    found = (result.labels > 0).reshape(20, -1).any(1).nonzero()[0].tolist()
    between = [s for s in result.stops if s.seed in (2, 7) and 2 <= s.last + s.step <= 7]
    assert len(between) == 2
    if fill:
        assert found == [2, 3, 4, 5, 6, 7]
        assert all(s.filled == (3, 6) and not s.early for s in between)
    else:
        assert found == [2, 7] and all(s.filled is None for s in between)
