"""When a walk through a volume stops: the rules, and the contrast measure of the fade rule.

A walk stops at the first slice where (:class:`StopRules`, thresholds documented there):

- the object vanished: fewer than ``min_area`` pixels (after removing pixels other objects
  own);
- the decoder doubts its mask: predicted IoU below ``min_score``, or below
  ``min_score_ratio`` of the highest it gave along the walk (the object is ending: a faint
  organ's walk otherwise runs on past its end on masks of the surrounding tissue);
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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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
    min_score : float
        Predicted IoU below this: the decoder doubts its own mask. 0.4 was chosen with the
        stage-3 ``tiny`` on volumes of the sample generator's other seeds (7 to 9; 3D Dice
        of 12 CT organs 0.833 at 0.5, 0.867 at 0.4, 0.873 at 0.3; 36 nuclei 0.842 at each,
        their walks ending on the fade rule) and checked on the real MR tumours of
        ``../shared/data`` (brain 1, brain 2, breast 1: 0.05, 0.14, 0.65 at 0.5; 0.14,
        0.14, 0.69 at 0.4).
    min_score_ratio : float or None
        Predicted IoU below this fraction of the highest the walk has had (from its first
        predicted slice on): the decoder grew less sure as the object ends. None turns the
        rule off. 0.75 was chosen with the stage-4 ``tiny`` on the generator's seeds 7 to 9
        (3D Dice of the 3 liver-like organs 0.862 without the rule, 0.881 at 0.6, 0.885 at
        0.7, 0.898 at 0.75, 0.894 at 0.8; the 9 other organs 0.959 -> 0.958, the 36 nuclei
        0.848 -> 0.846; the real MR tumours unchanged).
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
    """

    min_area: int = 8
    min_score: float = 0.4
    min_score_ratio: float | None = 0.75
    min_overlap: float = 0.3
    max_growth: float = 2.0
    min_contrast: float | None = 0.3

    def why_stop(self, previous: np.ndarray, mask: np.ndarray, score: float) -> str | None:
        """Why `mask` (following `previous`) ends the walk, or None to accept it."""
        area, before = int(mask.sum()), int(previous.sum())
        if area < max(self.min_area, 1):  # an empty mask always ends the walk
            return f"vanished: {area} pixels < {max(self.min_area, 1)}"
        if score < self.min_score:
            return f"predicted IoU {score:.2f} < {self.min_score}"
        if area > self.max_growth * max(before, _GROWTH_FLOOR):
            return f"leak: area {area} > {self.max_growth} x {before}"
        union = np.logical_or(mask, previous).sum()
        overlap = np.logical_and(mask, previous).sum() / union if union else 1.0
        if overlap < self.min_overlap:
            return f"jump: overlap {overlap:.2f} with the previous slice < {self.min_overlap}"
        return None

    def why_less_sure(self, score: float, highest: float | None) -> str | None:
        """Why a mask of predicted IoU `score` ends a walk whose highest was `highest`.

        >>> StopRules().why_less_sure(0.5, 0.9)
        'less sure: predicted IoU 0.50 < 0.75 x 0.90'
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
    (channels averaged); None for an empty mask or one without surroundings. Pixels of
    `exclude` (e.g. other objects: a touching nucleus is not the background) are left out
    of the ring.

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
        around &= ~exclude[y0:y1, x0:x1]
    if not around.any():
        return None
    pixels = np.asarray(read(z, (slice(y0, y1), slice(x0, x1))), dtype=np.float64)
    if pixels.ndim == 3:
        pixels = pixels.mean(axis=-1)
    ring_pixels = pixels[around]
    return float(pixels[inside].mean() - ring_pixels.mean()), float(ring_pixels.std())


# What a reason starts with -> the StopRules field that decided it, which way it must move
# for the walk to go on, and the command line's option for it.
_RULES = {
    "vanished": ("min_area", "lower", None),
    "predicted IoU": ("min_score", "lower", "--min-score"),
    "less sure": ("min_score_ratio", "lower", "--min-score-ratio"),
    "leak": ("max_growth", "raise", None),
    "jump": ("min_overlap", "lower", None),
    "faded": ("min_contrast", "lower", "--no-fade-rule"),
}


def rule_hint(reason: str) -> str:
    """What to change for a walk to go past a stop of this `reason` ("" if nothing).

    >>> print(rule_hint("faded: contrast 0.15 of the strongest < 0.3"))
    ; to go further, lower StopRules.min_contrast (--no-fade-rule)
    """
    for start, (field, way, option) in _RULES.items():
        if reason.startswith(start):
            flag = f" ({option})" if option else ""
            return f"; to go further, {way} StopRules.{field}{flag}"
    return ""
