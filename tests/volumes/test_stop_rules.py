"""The stop rules' thresholds, checked on the way in, and every stop said to the user: where,
which rule, what to change; a walk that stops next to its seed warns (issue #24)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tilesam.errors import TileSAMError, TileSAMWarning
from tilesam.volumes.propagate import propagate_mask
from tilesam.volumes.stop_rules import StopRules
from tilesam.volumes.stops import Stop
from tilesam.volumes.walk import SlicePrediction, propagate_labels


@pytest.mark.parametrize(
    ("field", "value"),
    [("min_area", -1), ("min_score", 1.5), ("min_score", math.nan), ("min_score_ratio", 0.0),
     ("min_score_ratio", 1.2), ("min_overlap", -0.1), ("max_growth", 0.5),
     ("min_contrast", 2.0), ("min_area", None), ("max_growth", "2")],
)  # fmt: skip
def test_a_threshold_out_of_range_is_refused_naming_the_rule_and_its_option(field, value):
    option = "--" + field.replace("_", "-")
    with pytest.raises(TileSAMError, match=f"StopRules.{field} \\({option}\\) must be"):
        StopRules(**{field: value})


def test_rules_given_as_a_mapping_are_checked_before_any_work() -> None:
    assert StopRules.of({"max_growth": 4.0}) == StopRules(max_growth=4.0)
    assert StopRules.of(None) == StopRules() and StopRules().min_score is None
    with pytest.raises(TileSAMError, match="Unknown stop rule\\(s\\) min_iou; the rules are"):
        StopRules.of({"min_iou": 0.5})
    # Refused before the volume is even opened: no model is loaded, nothing is embedded.
    with pytest.raises(TileSAMError, match="min_overlap"):
        propagate_mask("no/such/volume.nii.gz", rules={"min_overlap": 2.0}, points=[(0, 1, 1)])


def _disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2


def test_a_walk_that_fails_at_its_first_step_warns_and_still_returns_its_labels() -> None:
    """The decoder's score halves after the seed (another prompt kind): no rule reads that
    as failure now; a mask that jumps away on the first slice stops the walk, with a warning
    that names the rule and the option, and the labels (the seed) come back all the same."""
    shape = (9, 48, 48)
    here, there = _disc(shape[1:], (16, 16), 8), _disc(shape[1:], (34, 34), 8)

    def halved(z, prompt):
        return SlicePrediction(here, 0.3)  # a click's mask scored 0.6, derived ones 0.3

    with warnings.catch_warnings():
        warnings.simplefilter("error", TileSAMWarning)  # no warning: the walk goes on
        out = propagate_labels(shape, {4: here.astype(int)}, halved)
    assert out.labels.any(axis=(1, 2)).all() and {s.reason for s in out.stops} == {"range"}

    def jumping(z, prompt):
        return SlicePrediction(there, 0.9)

    with pytest.warns(TileSAMWarning, match="within two slices of the seed") as caught:
        out = propagate_labels(shape, {4: here.astype(int)}, jumping)
    np.testing.assert_array_equal(out.labels[4], here)  # the seed, written
    assert not np.delete(out.labels, 4, axis=0).any()
    text = str(caught[0].message)
    assert "object 1, towards lower slices: stopped after slice 4, at its seed (slice 4)" in text
    assert "slice 3 broke a rule (jump: overlap 0.00 with the previous slice < 0.3)" in text
    assert "lower StopRules.min_overlap (--min-overlap)" in text
    assert "a box around the object" in text


def test_stops_say_where_which_rule_and_what_to_change() -> None:
    far = Stop(3, 1, 20, "leak: area 900 > 2.0 x 300", seed=12)
    assert not far.early
    assert far.describe() == (
        "object 3, towards higher slices: stopped after slice 20, 8 slices from its seed "
        "(slice 12); slice 21 broke a rule (leak: area 900 > 2.0 x 300); to go further, raise "
        "StopRules.max_growth (--max-growth)"
    )
    near = Stop(1, -1, 11, "faded: contrast 0.20 of the strongest < 0.3", seed=12)
    assert near.early and "1 slice from its seed" in near.describe()
    assert "(--min-contrast; 0 turns the rule off)" in near.describe()
    end = Stop(1, -1, 0, "range", seed=1)
    assert not end.early  # the volume ends there: nothing to warn about
    assert end.describe() == (
        "object 1, towards lower slices: reached slice 0, the end of the range or the other walk"
    )


def test_a_seed_on_the_first_slice_touching_the_image_edge() -> None:
    """A seed on the volume's first slice, its object cut by the image border: the walk
    down ends at once at the volume's end (no warning), the walk up follows the object."""
    shape = (8, 40, 40)
    cut = _disc(shape[1:], (0, 20), 12)  # half a disc, on the top border

    def same(z, prompt):
        return SlicePrediction(cut if z < 6 else np.zeros(shape[1:], bool), 0.5)

    with warnings.catch_warnings():
        warnings.simplefilter("error", TileSAMWarning)
        out = propagate_labels(shape, {0: cut.astype(int)}, same)
    assert np.flatnonzero(out.labels.any(axis=(1, 2))).tolist() == list(range(6))
    reasons = {s.step: s.reason for s in out.stops}
    assert reasons[-1] == "range" and reasons[1].startswith("vanished")


def test_a_volume_of_one_slice_is_refused_with_the_fix() -> None:
    with pytest.raises(TileSAMError, match="has one slice: there is nothing to propagate to"):
        propagate_mask(np.zeros((1, 32, 32), np.int16), points=[(0, 5, 5)])
