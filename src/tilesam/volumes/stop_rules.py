"""When a walk through a volume stops: the rules, and the contrast measure of the fade rule.

A walk stops at the first slice where (:class:`StopRules`, thresholds documented there):

- the object vanished: fewer than ``min_area`` pixels (after removing pixels other objects
  own);
- the decoder grew less sure: predicted IoU below ``min_score_ratio`` of the highest it gave
  along the walk (the object is ending: a faint organ's walk otherwise runs on past its end
  on masks of the surrounding tissue); and, only if set, below the absolute ``min_score``.
  Both are the decoder's opinion, but the ratio compares it with itself on the same kind of
  prompt (every slice after the seed is prompted alike, from the previous mask), while an
  absolute threshold assumes one model's calibration for one prompt kind: on volumes unlike
  its training data the bundled ``tiny`` scores the box and point a walk sends far below
  their quality and a click's mask far above (see ``min_score``), and walks stopped at once;
- the mask jumped: its IoU with the previous slice's mask is below ``min_overlap``;
- the mask leaks: its area grew by more than ``max_growth`` times the previous slice's;
- the object faded: its contrast (mean intensity inside minus the mean of a ring
  ``FADE_RING`` pixels wide, ``FADE_GAP`` pixels out) fell below ``min_contrast`` of the
  strongest the walk has seen, from its annotated slice on. Past the end of a nucleus a
  confocal stack still shows its blurred ghost, which the decoder segments as if it were the
  nucleus: with the bundled ``tiny`` the walks overran each end by two or three slices. Only
  distinct objects are judged (contrast once above ``FADE_DISTINCT`` times the ring's
  standard deviation): an organ next to lung, fat and other organs is not, so a mask a few
  pixels too tight cannot end its walk. Only with an ``image`` to read, which
  :func:`tilesam.propagate_mask` always gives; ``min_contrast=None`` turns it off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
from scipy import ndimage

from tilesam.errors import TileSAMError

_GROWTH_FLOOR = 64  # pixels: growth is measured against at least this area (tiny masks jitter)
#: ``read(z, (rows, cols)) -> pixels``: a region of slice z (any intensities, channels last)
SliceReader = Callable[[int, tuple[slice, slice]], np.ndarray]
FADE_RING = 4  # pixels: the ring around a mask that stands for the object's surroundings
FADE_GAP = 2  # pixels between mask and ring: a mask a little too tight or loose still reads
FADE_DISTINCT = 3.0  # contrast above this many ring standard deviations: a distinct object


@dataclass(frozen=True)
class StopRules:
    """When a walk stops (see the module docstring); the defaults are TileSAM's.

    Attributes
    ----------
    min_area : int
        Fewer pixels than this (and always an empty mask): the object has vanished.
    min_score : float or None
        Predicted IoU below this: the decoder doubts its own mask. Off (None) by default:
        what a predicted IoU means depends on the model and on the prompt (on the faint
        spleen of :mod:`tilesam.evaluate.volume_generator`'s CT, seed 0, the bundled
        ``tiny`` scores the box and point a walk sends 0.37-0.41 for masks of IoU
        0.42-0.67, and a click's mask of IoU 0.27 at 0.66), so an absolute threshold chosen
        for one model and one kind of volume stops walks at once on others (that spleen's
        walks stopped on both sides of the seed at 0.4: 3D Dice 0.38). Set it for a model
        whose predicted IoU you have checked on your data.
    min_score_ratio : float or None
        Predicted IoU below this fraction of the highest the walk has had (from its first
        predicted slice on, never the seed's: the seed's prompt is another kind): the
        decoder grew less sure as the object ends. None turns the rule off. A ratio is the
        same for any scale of the model's scores: with every slice's score halved, the sample
        generator's nuclei keep 3D Dice 0.862 (0.418 with the absolute 0.4). 0.8 was chosen
        with the bundled ``tiny`` on the sample generator's seeds 7 to 9 (12 CT organs / 36
        nuclei: 0.934 / 0.848 without the rule, 0.940 / 0.847 at 0.7, 0.943 / 0.846 at 0.75,
        0.942 / 0.862 at 0.8, 0.940 / 0.870 at 0.85; 0.85 gains 0.003 more on the mean of
        the two, within the noise, and sits closer to the spread of the decoder's scores
        along a walk, so it would end more walks too soon elsewhere).
    min_overlap : float
        IoU with the previous slice's mask below this: the mask jumped elsewhere.
    max_growth : float
        Area above this many times the previous slice's (at least 64 pixels): a leak.
    min_contrast : float or None
        Contrast against the surroundings (`mask_contrast`) below this fraction of the
        strongest the walk has seen: the object faded. Only a distinct object is judged: one
        whose contrast was once above ``FADE_DISTINCT`` times the ring's standard deviation
        (a nucleus on its background, not an organ next to lung and fat). None turns the
        rule off. 0.3 was chosen on nuclei stacks of the sample generator's other seeds (3D
        Dice 0.82 without the rule, 0.87 at 0.25 and 0.3, 0.88 at 0.4): the gain levels
        off, and a stricter rule would cut objects whose contrast varies along their length.

    Examples
    --------
    >>> prev = np.zeros((20, 20), bool); prev[5:15, 5:15] = True
    >>> StopRules().why_stop(prev, prev, 0.9) is None
    True
    >>> StopRules().why_stop(prev, np.ones((20, 20), bool), 0.9)
    'leak: area 400 > 2.0 x 100'
    >>> StopRules(min_score_ratio=1.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: StopRules.min_score_ratio (--min-score-ratio) must be ... got 1.5.
    """

    min_area: int = 8
    min_score: float | None = None
    min_score_ratio: float | None = 0.8
    min_overlap: float = 0.3
    max_growth: float = 2.0
    min_contrast: float | None = 0.3

    def __post_init__(self) -> None:
        for name, (low, high, closed, may_be_off) in _RANGES.items():
            value = getattr(self, name)
            if value is None and may_be_off:
                continue
            number = isinstance(value, (int, float, np.integer, np.floating))
            number = number and not isinstance(value, bool) and not math.isnan(value)
            if not (number and (low <= value if closed else low < value) and value <= high):
                raise TileSAMError(_range_text(name, low, high, closed, may_be_off, value))

    def why_stop(self, previous: np.ndarray, mask: np.ndarray, score: float) -> str | None:
        """Why `mask` (following `previous`) ends the walk, or None to accept it."""
        # count_nonzero: four times faster than sum on a bool slice of millions of pixels.
        area, before = np.count_nonzero(mask), np.count_nonzero(previous)
        if area < max(self.min_area, 1):  # an empty mask always ends the walk
            return f"vanished: {area} pixels < {max(self.min_area, 1)}"
        if self.min_score is not None and score < self.min_score:
            return f"predicted IoU {score:.2f} < {self.min_score}"
        if area > self.max_growth * max(before, _GROWTH_FLOOR):
            return f"leak: area {area} > {self.max_growth} x {before}"
        union = np.count_nonzero(mask | previous)
        overlap = np.count_nonzero(mask & previous) / union if union else 1.0
        if overlap < self.min_overlap:
            return f"jump: overlap {overlap:.2f} with the previous slice < {self.min_overlap}"
        return None

    @classmethod
    def of(cls, rules: StopRules | Mapping[str, float | None] | None) -> StopRules:
        """`rules` as StopRules: None gives the defaults; a mapping changes the thresholds
        it names (e.g. a GUI's fields), checked like any StopRules.

        >>> StopRules.of({"min_score_ratio": 0.7}).min_score_ratio
        0.7
        """
        if rules is None or isinstance(rules, StopRules):
            return rules or cls()
        unknown = set(rules) - {f.name for f in fields(cls)}
        if unknown:
            raise TileSAMError(
                f"Unknown stop rule(s) {', '.join(sorted(unknown))}; the rules are "
                f"{', '.join(f.name for f in fields(cls))}."
            )
        return replace(cls(), **rules)

    def why_less_sure(self, score: float, highest: float | None) -> str | None:
        """Why a mask of predicted IoU `score` ends a walk whose highest was `highest`.

        >>> StopRules().why_less_sure(0.5, 0.9)
        'less sure: predicted IoU 0.50 < 0.8 x 0.90'
        """
        if self.min_score_ratio is None or highest is None:
            return None
        if score < self.min_score_ratio * highest:
            return f"less sure: predicted IoU {score:.2f} < {self.min_score_ratio} x {highest:.2f}"
        return None

    def why_faded(self, contrast: float | None, strongest: float | None) -> str | None:
        """Why a mask of `contrast` ends a walk whose strongest contrast was `strongest`.

        >>> StopRules().why_faded(20.0, 100.0)
        'faded: contrast 0.20 of the strongest < 0.3'
        """
        if self.min_contrast is None or contrast is None or strongest is None:
            return None  # the rule is off, or the object was never distinct
        ratio = contrast / strongest  # negative when a bright object turned dark, or back
        if ratio < self.min_contrast:
            return f"faded: contrast {ratio:.2f} of the strongest < {self.min_contrast}"
        return None


def mask_contrast(
    read: SliceReader,
    z: int,
    mask: np.ndarray,
    ring: int = FADE_RING,
    gap: int = FADE_GAP,
    exclude: np.ndarray | None = None,
) -> tuple[float, float] | None:
    """How far `mask` stands out on slice `z`: the mean intensity inside it minus the mean of
    a ring `ring` pixels wide, `gap` pixels away from it, and the ring's standard deviation
    (channels averaged); None for an empty mask or one without surroundings. The non-zero
    pixels of `exclude` (e.g. the slice's labels: a touching nucleus is not the background)
    are left out of the ring; only the part around the mask is read.

    >>> image = np.zeros((1, 20, 20)); image[0, 5:10, 5:10] = 7.0
    >>> mask = image[0] > 0
    >>> mask_contrast(lambda z, region: image[z][region], 0, mask)
    (7.0, 0.0)
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    reach = gap + ring
    y0, y1 = max(int(rows[0]) - reach, 0), min(int(rows[-1]) + reach + 1, h)
    x0, x1 = max(int(cols[0]) - reach, 0), min(int(cols[-1]) + reach + 1, w)
    inside = mask[y0:y1, x0:x1]
    near = ndimage.binary_dilation(inside, iterations=gap) if gap else inside
    around = ndimage.binary_dilation(near, iterations=ring) & ~near
    if exclude is not None:
        around &= exclude[y0:y1, x0:x1] == 0
    if not around.any():
        return None
    pixels = np.asarray(read(z, (slice(y0, y1), slice(x0, x1))), dtype=np.float64)
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)
    ring_pixels = pixels[around]
    return float(pixels[inside].mean() - ring_pixels.mean()), float(ring_pixels.std())


# Each threshold's range: (low, high, low included, None turns the rule off).
_RANGES = {
    "min_area": (0, math.inf, True, False),
    "min_score": (0.0, 1.0, True, True),
    "min_score_ratio": (0.0, 1.0, False, True),
    "min_overlap": (0.0, 1.0, True, False),
    "max_growth": (1.0, math.inf, True, False),
    "min_contrast": (0.0, 1.0, True, True),
}

# What a reason starts with -> the StopRules field that decided it and which way it must
# move for the walk to go on.
_RULES = {
    "vanished": ("min_area", "lower"),
    "predicted IoU": ("min_score", "lower"),
    "less sure": ("min_score_ratio", "lower"),
    "leak": ("max_growth", "raise"),
    "jump": ("min_overlap", "lower"),
    "faded": ("min_contrast", "lower"),
}


def may_be_off(field: str) -> bool:
    """Whether the rule of the StopRules field `field` may be off (None; 0 on the command
    line).

    >>> may_be_off("min_score_ratio"), may_be_off("min_overlap")
    (True, False)
    """
    return _RANGES[field][3]


def option_of(field: str) -> str:
    """The ``tilesam propagate`` option of a StopRules field.

    >>> option_of("min_score_ratio")
    '--min-score-ratio'
    """
    return "--" + field.replace("_", "-")


def _range_text(name, low, high, closed, may_be_off, value) -> str:
    above = f"at least {low:g}" if closed else f"above {low:g}"
    limit = f"a number {above} and at most {high:g}" if high < math.inf else f"a number {above}"
    off = ", or None (0 on the command line) to turn the rule off" if may_be_off else ""
    return f"StopRules.{name} ({option_of(name)}) must be {limit}{off}; got {value!r}."


def rule_hint(reason: str) -> str:
    """What to change for a walk to go past a stop of this `reason` ("" if nothing).

    >>> print(rule_hint("faded: contrast 0.15 of the strongest < 0.3"))
    ; to go further, lower StopRules.min_contrast (--min-contrast; 0 turns the rule off)
    """
    if reason.startswith("absent"):  # SAM 2.1's object score: no threshold of ours
        return (
            "; the model's object score says the object is not on that slice: if it is, "
            "annotate it there (or further on) and propagate again"
        )
    for start, (field, way) in _RULES.items():
        if reason.startswith(start):
            off = "; 0 turns the rule off" if _RANGES[field][3] else ""
            return f"; to go further, {way} StopRules.{field} ({option_of(field)}{off})"
    return ""
