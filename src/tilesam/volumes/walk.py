"""Slice-to-slice propagation through a volume: the algorithm, independent of the model.

From the slices a user annotated (a seed: 2D labels on some slices), every object is carried
slice by slice in both directions. The model stays outside: a *slice predictor*
``predict(z, prompt) -> SlicePrediction`` answers a prompt on one slice (in TileSAM, a
:class:`tilesam.Session` over a tiled embedding cache; in tests, anything deterministic).

Prompts for the next slice come from the object's mask on the current one
(:func:`prompt_from_mask`): its box (grown by ``BOX_MARGIN`` of its size), a positive point
at the mask's deepest pixel, a negative point at the deepest background pixel inside the box
when that hollow is deep (a concave or ring-shaped object). ``method`` chooses what is
sent: ``"prompt"`` the box and the points, ``"box"`` the box only, ``"points"`` the points
only, ``"prompt+logits"`` the box, the points and the decoder's low-resolution logits of the
current slice as mask input (the predictor's opaque ``state``). The logits are not sent by
default: the decoder then copies the previous slice's mask past the object's end (with the
bundled ``tiny`` on the sample nuclei, 3D Dice 0.60 with them, 0.78 without, both before the
fade rule below; 0.88 with it).

A walk stops at the first slice where one of its
:class:`~tilesam.volumes.stop_rules.StopRules` says so (the object vanished, the decoder
grew less sure than it was along the walk, the mask jumped or leaked, the object faded: see
:mod:`tilesam.volumes.stop_rules`). That slice is not written: a leak is caught, not carried
to the end of the volume. Every stop is kept (:class:`Stop`, with a line for the user that
names the rule and the option that would take the walk further), and walks that stop within
two slices of their seed raise one :class:`~tilesam.errors.TileSAMWarning`: the labels are
returned (and written) all the same, but the user hears that they are not what was asked.

Rules for the labels:

- An object's annotated slices are kept exactly as given; so is every annotated pixel.
- Between two annotated slices of an object the gap is filled from both ends at once, one
  slice from each side in turn, so each slice comes from its nearer annotation and the
  result does not depend on a direction; if one side stops, the other may go on. Where both
  stop before they meet, the slices left between them are interpolated from the two walks'
  last masks (``fill_gaps``, :mod:`tilesam.volumes.interpolate`): an object annotated on
  both sides of a gap spans it, and its shape between two known masks is a better answer
  than none. With ``method="interpolate"`` no model is asked at all: every gap between an
  object's annotated slices is interpolated, and nothing is added beyond its first and last.
- Objects are propagated in order of their ids and never overwrite one another (nor an
  annotation): a pixel two objects claim stays with the first.
- ``slice_range = (start, stop)`` (end-exclusive) caps every walk.
- ``largest_component`` keeps each object's largest 3D connected component (plus its
  annotations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from tilesam.cache.progress import CancelFlag
from tilesam.decode.prompt import Prompt
from tilesam.errors import Cancelled, TileSAMError
from tilesam.volumes.components import keep_largest_components
from tilesam.volumes.interpolate import INTERPOLATE, fill_between
from tilesam.volumes.stop_rules import (
    FADE_DISTINCT,
    SliceReader,
    StopRules,
    mask_contrast,
)
from tilesam.volumes.stops import Stop, warn_early_stops

METHODS = ("prompt", "box", "points", "prompt+logits")
BOX_MARGIN = 0.05  # the next slice's box: the mask's box grown by 5 % of its size per side
NEGATIVE_DEPTH = 0.2  # a hollow this deep (fraction of the box's short side) gets a - point
_POINT_GRID = 128  # points are placed on at most this many samples per side of the box


@dataclass(frozen=True)
class SlicePrediction:
    """A predictor's answer: the ``(H, W)`` bool mask, its predicted IoU and an opaque state
    handed back with the next slice's prompt (TileSAM: the low-res logits per tile)."""

    mask: np.ndarray
    score: float
    state: Any = None


#: ``predict(z, prompt) -> SlicePrediction``
SlicePredictor = Callable[[int, Prompt], SlicePrediction]


@dataclass
class PropagationResult:
    """The labels volume ``(Z, H, W)`` uint32 and how every walk ended."""

    labels: np.ndarray
    stops: list[Stop] = field(default_factory=list)


def prompt_from_mask(mask: np.ndarray, method: str = "prompt", state: Any = None) -> Prompt:
    """The next slice's prompt from an object's mask on this one (see the module docstring).

    Examples
    --------
    >>> mask = np.zeros((40, 40), bool); mask[10:30, 10:30] = True
    >>> p = prompt_from_mask(mask)
    >>> p.box, p.points.tolist(), p.labels.tolist()
    ((9, 9, 31, 31), [[19.0, 19.0]], [1])
    """
    if method not in METHODS:
        raise TileSAMError(f"Unknown method {method!r}; use one of {', '.join(METHODS)}.")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    # Points need not be exact: distances on at most ~128 x 128 samples of the box keep the
    # cost per slice small for organs hundreds of pixels wide.
    step = max(1, -(-max(y1 - y0, x1 - x0) // _POINT_GRID))
    crop = mask[y0:y1:step, x0:x1:step]
    # Padding keeps the positive point away from the box edges as well as the mask's.
    depth = ndimage.distance_transform_edt(np.pad(crop, 1))[1:-1, 1:-1]
    points = [np.unravel_index(int(np.argmax(depth)), crop.shape)]
    labels = [1]
    hollow = ndimage.distance_transform_edt(~crop)  # distance to the mask, inside the box
    if hollow.max() * step >= max(2.0, NEGATIVE_DEPTH * min(y1 - y0, x1 - x0)):
        points.append(np.unravel_index(int(np.argmax(hollow)), crop.shape))
        labels.append(0)
    yx = np.asarray(points, dtype=np.float64) * step + [y0, x0]
    my, mx = (max(1, round(BOX_MARGIN * n)) for n in (y1 - y0, x1 - x0))
    h, w = mask.shape
    box = (max(y0 - my, 0), max(x0 - mx, 0), min(y1 + my, h), min(x1 + mx, w))
    if method == "box":
        return Prompt(box=box)
    lab = np.asarray(labels, dtype=np.int64)
    if method == "points":
        return Prompt(yx, lab)
    # The previous slice's logits go with the prompt as its mask prompt (method "prompt+logits").
    return Prompt(yx, lab, box, state if method == "prompt+logits" else None)


def propagate_labels(
    shape: tuple[int, int, int],
    seeds: Mapping[int, np.ndarray],
    predict: SlicePredictor,
    *,
    states: Mapping[tuple[int, int], Any] | None = None,
    method: str = "prompt",
    rules: StopRules | Mapping[str, float | None] | None = None,
    slice_range: tuple[int, int] | None = None,
    largest_component: bool = False,
    callback: Callable[[int, int], Any] | None = None,
    cancel: CancelFlag | None = None,
    image: SliceReader | None = None,
    fill_gaps: bool = True,
) -> PropagationResult:
    """Propagate every object of the annotated slices through a volume of `shape`.

    Parameters
    ----------
    shape : (Z, H, W)
    seeds : {z: (H, W) int array}
        The annotated slices, 0 = background, every other value an object id.
    predict : SlicePredictor
        Answers a prompt on one slice.
    states : {(id, z): state}, optional
        The predictor's state for an annotated object (e.g. the logits of the user's click),
        sent with method ``"prompt+logits"``.
    method, rules, slice_range, largest_component
        See the module docstring.
    callback : callable, optional
        ``callback(done, total)`` after every slice (counted per object).
    cancel : object with ``is_set()``, optional
        Checked before every slice; when set, :class:`tilesam.errors.Cancelled` is raised.
    image : callable, optional
        ``image(z, (rows, cols))`` reads a region of a slice, for the rule that stops a walk
        when the object fades (`StopRules.min_contrast`); without it that rule is off.
    fill_gaps : bool
        Interpolate the slices two walks towards each other left between them when both
        stopped (see the module docstring); the stops say which.

    Examples
    --------
    >>> truth = np.zeros((8, 32, 32), bool); truth[1:7, 8:24, 8:24] = True
    >>> oracle = lambda z, prompt: SlicePrediction(truth[z], 1.0)
    >>> out = propagate_labels(truth.shape, {3: truth[3].astype(int)}, oracle)
    >>> out.labels.sum(axis=(1, 2)).tolist()
    [0, 256, 256, 256, 256, 256, 256, 0]
    >>> print(out.stops[0].describe())  # doctest: +NORMALIZE_WHITESPACE
    object 1, towards lower slices: stopped after slice 1, 2 slices from its seed (slice 3);
    slice 0 broke a rule (vanished: 0 pixels < 8); to go further, lower StopRules.min_area
    (--min-area)
    """
    if method not in (*METHODS, INTERPOLATE):
        raise TileSAMError(
            f"Unknown method {method!r}; use one of {', '.join(METHODS)}, {INTERPOLATE}."
        )
    run = _Run(shape, seeds, predict, states or {}, method, StopRules.of(rules), cancel)
    # Interpolation applies no rule, so the fade rule's reads are not made for it.
    run.image = None if method == INTERPOLATE else image
    run.fill_gaps = fill_gaps
    run.set_range(slice_range)
    run.callback = callback
    for obj in run.objects:
        run.propagate(obj)
    if largest_component:
        run.keep_largest_components()
    warn_early_stops(run.stops)
    return PropagationResult(run.labels, run.stops)


@dataclass
class _Walk:
    obj: int
    step: int
    mask: np.ndarray
    state: Any
    last: int
    seed: int
    strongest: float | None = None  # the largest contrast (in magnitude) seen so far
    surest: float | None = None  # the highest predicted IoU of the walk's slices so far
    alive: bool = True
    stop: int | None = None  # where its Stop is in the run's list, once it stopped


class _Run:
    """One propagation: the labels being written, progress and the walks' stops."""

    def __init__(self, shape, seeds, predict, states, method, rules, cancel) -> None:
        self.labels = np.zeros(shape, dtype=np.uint32)
        self.annotated: dict[int, list[int]] = {}
        for z, seed in sorted(seeds.items()):
            seed = np.asarray(seed)
            if seed.shape != shape[1:]:
                raise TileSAMError(f"Seed of slice {z} has shape {seed.shape}, not {shape[1:]}.")
            self.labels[z] = seed
            for obj in np.unique(seed[seed > 0]).tolist():
                self.annotated.setdefault(int(obj), []).append(int(z))
        if not self.annotated:
            raise TileSAMError(
                "The seed mask is empty: draw or commit at least one object on a slice first."
            )
        self.objects = sorted(self.annotated)
        if method == INTERPOLATE:
            _check_interpolable(self.annotated)
        self.predict, self.states, self.method = predict, states, method
        self.rules, self.cancel = rules, cancel
        self.stops: list[Stop] = []
        self.callback: Callable[[int, int], Any] | None = None
        self.image: SliceReader | None = None
        self.fill_gaps = True
        self.done = 0

    def set_range(self, slice_range: tuple[int, int] | None) -> None:
        n = self.labels.shape[0]
        start, stop = (0, n) if slice_range is None else (int(v) for v in slice_range)
        if not 0 <= start < stop <= n:
            raise TileSAMError(
                f"slice_range {slice_range!r} must be (start, stop) with 0 <= start < stop <= {n}."
            )
        outside = sorted(
            {z for zs in self.annotated.values() for z in zs} - set(range(start, stop))
        )
        if outside:
            raise TileSAMError(
                f"Annotated slice(s) {outside} lie outside slice_range ({start}, {stop}); widen "
                "the range to include them."
            )
        self.start, self.stop = start, stop
        self.total = sum(stop - start - len(zs) for zs in self.annotated.values())

    def propagate(self, obj: int) -> None:
        own = self.annotated[obj]
        self._fill(self.start, own[0] - 1, None, self._walk(obj, own[0], -1))
        for a, b in zip(own, own[1:]):
            self._fill(a + 1, b - 1, self._walk(obj, a, +1), self._walk(obj, b, -1))
        self._fill(own[-1] + 1, self.stop - 1, self._walk(obj, own[-1], +1), None)

    def _walk(self, obj: int, z: int, step: int) -> _Walk:
        mask = self.labels[z] == obj
        walk = _Walk(obj, step, mask, self.states.get((obj, z)), z, z)
        self._remember_contrast(walk, self._contrast(z, mask))
        return walk

    def _contrast(self, z: int, mask: np.ndarray) -> tuple[float, float] | None:
        if self.image is None or self.rules.min_contrast is None:
            return None  # nothing to read with, or the rule is off
        # Objects already on this slice (annotated or propagated) are not its surroundings.
        return mask_contrast(self.image, z, mask, exclude=self.labels[z])

    @staticmethod
    def _remember_contrast(walk: _Walk, measured: tuple[float, float] | None) -> None:
        """Keep the strongest contrast of a distinct object (see `StopRules.min_contrast`)."""
        if measured is None:
            return
        difference, spread = measured
        stands_out = abs(difference) > FADE_DISTINCT * spread  # also keeps a zero out
        if stands_out and (walk.strongest is None or abs(difference) > abs(walk.strongest)):
            walk.strongest = difference

    def _fill(self, lo: int, hi: int, up: _Walk | None, down: _Walk | None) -> None:
        """Slices ``lo..hi`` from the walk up (from below) and down (from above), in turn;
        what both leave between them is interpolated (`fill_gaps`)."""
        if self.method == INTERPOLATE:  # no model: the gaps between annotations only
            if up is not None and down is not None and lo <= hi:
                self._interpolate(up, down)
            self._count(max(hi - lo + 1, 0))
            return
        walks = [w for w in (up, down) if w is not None]
        while lo <= hi and any(w.alive for w in walks):
            for w in walks:
                if w.alive and lo <= hi and self._advance(w, lo if w.step > 0 else hi):
                    lo, hi = (lo + 1, hi) if w.step > 0 else (lo, hi - 1)
        for w in walks:
            if w.alive:  # reached the range's end or the walk from the other side
                self.stops.append(Stop(w.obj, w.step, w.last, "range", w.seed))
        if self.fill_gaps and up is not None and down is not None and lo <= hi:
            self._interpolate(up, down)
            for w in walks:  # both stopped by a rule: their stops say the gap was filled
                self.stops[w.stop] = replace(self.stops[w.stop], filled=(lo, hi))
        self._count(max(hi - lo + 1, 0))  # slices no walk reached

    def _advance(self, walk: _Walk, z: int) -> bool:
        stop_if_cancelled(self.cancel)
        prompt = prompt_from_mask(walk.mask, self.method, walk.state)
        pred = self.predict(z, prompt)
        mask, window = unclaimed(pred.mask, self.labels[z])
        score = float(pred.score)
        reason = self.rules.why_stop(walk.mask, mask, score)
        reason = reason or self.rules.why_less_sure(score, walk.surest)
        measured = self._contrast(z, mask) if reason is None else None
        contrast = None if measured is None else measured[0]
        reason = reason or self.rules.why_faded(contrast, walk.strongest)
        if reason is not None:
            walk.alive, walk.stop = False, len(self.stops)
            self.stops.append(Stop(walk.obj, walk.step, walk.last, reason, walk.seed))
            return False
        self.labels[z][window][mask[window]] = walk.obj
        walk.mask, walk.state, walk.last = mask, pred.state, z
        walk.surest = score if walk.surest is None else max(walk.surest, score)
        self._remember_contrast(walk, measured)
        self._count(1)
        return True

    def _interpolate(self, up: _Walk, down: _Walk) -> None:
        """The slices between the two walks' last masks, from those masks' shapes."""
        stop_if_cancelled(self.cancel)
        fill_between(self.labels, up.obj, up.last, down.last)

    def _count(self, n: int) -> None:
        self.done += n
        if self.callback is not None and n:
            self.callback(self.done, self.total)

    def keep_largest_components(self) -> None:
        keep_largest_components(self.labels, self.objects, self.annotated)


def stop_if_cancelled(cancel: CancelFlag | None) -> None:
    """Raise :class:`~tilesam.errors.Cancelled` once `cancel` is set: checked before each
    slice and each gap filled, by every kind of walk."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("Propagation cancelled; no labels were kept.")


def unclaimed(answer: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The predictor's mask without the pixels other objects (or annotations) own on the
    slice's `labels`, and the window that holds it: work on the window only, a small part
    of a large slice.

    >>> labels = np.zeros((6, 6), np.uint32); labels[2, :] = 7
    >>> mask, window = unclaimed(np.eye(6, dtype=bool), labels)
    >>> int(mask.sum()), window
    (5, (slice(0, 6, None), slice(0, 6, None)))
    """
    mask = np.array(answer, dtype=bool)  # a copy: the answer may be the predictor's own
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return mask, (slice(0, 0), slice(0, 0))
    window = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    mask[window] &= labels[window] == 0
    return mask, window


def _check_interpolable(annotated: Mapping[int, list[int]]) -> None:
    """Refuse objects annotated on one slice: interpolation fills between two."""
    alone = [obj for obj, slices in annotated.items() if len(slices) < 2]
    if alone:
        raise TileSAMError(
            f"method={INTERPOLATE!r} fills the slices between an object's annotated slices; "
            f"object(s) {', '.join(map(str, alone))} are annotated on one slice only. Annotate "
            "them on another slice too, or propagate them with the model (method='prompt')."
        )
