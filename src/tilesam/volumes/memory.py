"""Memory propagation (SAM 2.1): the slices of a volume as the frames of a video.

Each object gets its own :class:`~tilesam.models.sam2_tracker.Track` per direction, each
with SAM 2.1's bounded memory bank (the annotated slices and the last ``memory_frames``
tracked ones): every annotated slice of the object is a prompted ("conditioning") frame of
both tracks, and the model carries the object from them with its memory attention, as the
official video predictor does, instead of a prompt derived from the previous slice's mask.

- **Up**: from each annotated slice to the next one (or the end of the range); the slices
  between two annotations read both (the official predictor's forward pass).
- **Down**: from the first annotated slice to the start of the range, and from each later
  one down to where the walk up from the annotation below it stopped, if it stopped short
  (one side may go on where the other stopped, as in :mod:`tilesam.volumes.walk`).

Objects are propagated in the order of their ids; pixels other objects (or annotations)
own are never taken, and the memory keeps the model's own mask. A walk stops where the
object score says the object is absent, or where a :class:`StopRules` rule says so (the
predicted IoU is the tracker's); each stop is a :class:`~tilesam.volumes.stops.Stop`.
Embeddings come from the session: one tile per slice (slices larger than a tile are
refused for now), its high-resolution features included.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.cache.progress import CancelFlag
from tilesam.errors import TileSAMError, TileSAMWarning
from tilesam.volumes.components import keep_largest_components
from tilesam.volumes.interpolate import INTERPOLATE, fill_between
from tilesam.volumes.stop_rules import FADE_DISTINCT, SliceReader, StopRules, mask_contrast
from tilesam.volumes.stops import Stop, warn_early_stops
from tilesam.volumes.walk import METHODS, PropagationResult, stop_if_cancelled, unclaimed

if TYPE_CHECKING:
    from tilesam.models.sam2_tracker import FrameFeatures, Sam2Tracker, Track
    from tilesam.segment.session import Session

MEMORY = "memory"
#: The most recent frames a bank may keep (the tracker's limit: 15 object pointers).
MAX_MEMORY_FRAMES = 15
#: What an annotated slice holds: a mask, or the user's prompt parts
#: (``{"points": [...], "labels": [...], "box": ...}``) for object 1.
Annotation = np.ndarray | Mapping[str, Any]


def is_sam2(session: Session) -> bool:
    """Whether the session's model is a SAM 2 model (its cache signature says so).

    >>> from tilesam.segment.session import Session
    >>> is_sam2(Session(np.zeros((2, 32, 32), np.uint8), "tiny"))
    False
    """
    return session.signature["model"].get("resize") == "square"


def check_method(method: str | None) -> None:
    """Refuse an unknown propagation method before any work.

    >>> check_method("memory"), check_method(None)
    (None, None)
    """
    if method is not None and method not in ("auto", MEMORY, *METHODS, INTERPOLATE):
        raise TileSAMError(
            f"Unknown method {method!r}; use one of {MEMORY}, {', '.join(METHODS)}, "
            f"{INTERPOLATE} (or None: {MEMORY} for SAM 2.1 models, prompt for SAM)."
        )


def resolve_method(method: str | None, session: Session) -> str:
    """The propagation method: ``None`` / ``"auto"`` give ``"memory"`` for a SAM 2
    model and ``"prompt"`` for SAM (and, with a warning, for a SAM 2 model whose slices
    span several tiles); ``"memory"`` with a SAM model is refused."""
    sam2 = is_sam2(session)
    if method is None or method == "auto":
        if sam2 and session.grid.n_tiles > 1:
            warnings.warn(
                "Memory propagation (SAM 2.1's default) needs each slice in one tile for now; "
                f"these slices are {session.grid.n_tiles} tiles, so they are propagated "
                "with method='prompt' (pass method='memory' to hear why it cannot run).",
                TileSAMWarning,
                stacklevel=3,
            )
            return "prompt"
        return MEMORY if sam2 else "prompt"
    if method == MEMORY and not sam2:
        raise TileSAMError(
            f"method='memory' needs a SAM 2.1 model (it tracks with the model's video "
            f"memory); {session.signature['model'].get('name', 'this model')!r} is a SAM "
            "model. Use method='prompt' (the default for it; --method prompt), or load a "
            "SAM 2.1 model (e.g. 'sam2.1_hiera_tiny')."
        )
    return method


def check_memory_frames(memory_frames: int | None) -> int | None:
    """`memory_frames` checked: None (SAM 2.1's 6) or 1 to :data:`MAX_MEMORY_FRAMES`.

    >>> check_memory_frames(40)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: memory_frames (--memory-frames) must be a whole number 1 to 15...
    """
    if memory_frames is None:
        return None
    whole = isinstance(memory_frames, int | np.integer) and not isinstance(memory_frames, bool)
    if not whole or not 1 <= memory_frames <= MAX_MEMORY_FRAMES:
        raise TileSAMError(
            f"memory_frames (--memory-frames) must be a whole number 1 to {MAX_MEMORY_FRAMES} "
            f"(the recent slices whose memory each object keeps; SAM 2.1 reads 6), got "
            f"{memory_frames!r}. More than the volume's slices is fine: the bank never fills."
        )
    return int(memory_frames)


def check_single_tile(session: Session) -> None:
    """Refuse a session whose slices span several tiles (not supported yet)."""
    grid = session.grid
    if grid.n_tiles == 1:
        return
    (h, w), (ny, nx) = grid.slice_shape, grid.grid_shape
    raise TileSAMError(
        f"Memory propagation (SAM 2.1) needs each slice in one tile for now: these slices "
        f"are {h} x {w} pixels, {ny} x {nx} tiles of {grid.tile_size}. Open the session "
        f"(or the cache) with tile_size={max(h, w)} or more (--tile {max(h, w)}: each slice "
        "is embedded whole, at a lower magnification), crop the volume, or propagate with "
        "method='prompt'."
    )


@dataclass
class _Walk:
    """One object's walk in one direction, from `seed` through the slices up to `end`."""

    obj: int
    step: int
    seed: int
    end: int  # the last slice it may write (inclusive)
    mask: np.ndarray
    track: Track
    last: int = -1
    surest: float | None = None
    strongest: float | None = None
    alive: bool = True

    def __post_init__(self) -> None:
        self.last = self.seed


class _Frames:
    """The session's embedding of a slice as the tracker's features (the last one kept)."""

    def __init__(self, session: Session, tracker: Sam2Tracker) -> None:
        self.session, self.tracker = session, tracker
        self._kept: tuple[int, FrameFeatures] | None = None

    def __call__(self, z: int) -> FrameFeatures:
        if self._kept is None or self._kept[0] != z:
            self._kept = (z, self.tracker.frame(self.session.embedding(z, 0, 0)))
        return self._kept[1]


def propagate_memory(
    session: Session,
    annotations: Mapping[int, Annotation],
    *,
    rules: StopRules | Mapping[str, float | None] | None = None,
    slice_range: tuple[int, int] | None = None,
    largest_component: bool = False,
    memory_frames: int | None = None,
    callback: Callable[[int, int], Any] | None = None,
    cancel: CancelFlag | None = None,
    image: SliceReader | None = None,
    fill_gaps: bool = True,
) -> PropagationResult:
    """Propagate objects through the session's volume with SAM 2.1's memory.

    Parameters
    ----------
    session : Session
        Over the volume as walked (slices along axis 0), with a SAM 2.1 model with its
        memory, one tile per slice.
    annotations : {z: mask or prompt}
        Annotated slices: ``(H, W)`` integer labels (every id > 0 an object), or the
        user's prompt parts for object 1 (``points`` ``(y, x)``, ``labels``, ``box``),
        answered here by the tracker.
    rules, slice_range, largest_component, callback, cancel, image, fill_gaps
        As for :func:`tilesam.volumes.walk.propagate_labels`.
    memory_frames : int, optional
        Recent slices whose memory each track keeps (default: SAM 2.1's 6).

    Returns
    -------
    PropagationResult
        The ``(Z, H, W)`` uint32 labels and every walk's :class:`Stop`.
    """
    from tilesam.models.sam2_tracker import Sam2Tracker

    check_single_tile(session)
    rules = StopRules.of(rules)
    n = session.source.n_slices
    tracker = Sam2Tracker(
        session.model, num_frames=n, max_recent=check_memory_frames(memory_frames)
    )
    run = _MemoryRun(session, tracker, rules, (n, *session.grid.slice_shape))
    run.range(slice_range, annotations)
    run.callback, run.cancel, run.image = callback, cancel, image
    run.fill_gaps = fill_gaps
    run.answer_prompts(annotations)
    for obj in run.objects:
        run.propagate(obj)
    if largest_component:
        keep_largest_components(run.labels, run.objects, run.annotated)
    warn_early_stops(run.stops)
    return PropagationResult(run.labels, run.stops)


class _MemoryRun:
    """One memory propagation: labels, tracks and stops (see the module docstring)."""

    def __init__(self, session, tracker, rules, shape) -> None:
        self.tracker, self.rules = tracker, rules
        self.frames = _Frames(session, tracker)
        self.labels = np.zeros(shape, dtype=np.uint32)
        self.prompts: dict[int, Mapping[str, Any]] = {}
        self.annotated: dict[int, list[int]] = {}
        self.stops: list[Stop] = []
        self.callback: Callable[[int, int], Any] | None = None
        self.cancel: CancelFlag | None = None
        self.image: SliceReader | None = None
        self.fill_gaps = True
        self.done = self.expected = 0

    def range(self, slice_range, annotations: Mapping[int, Annotation]) -> None:
        """Set the slices walked and read the annotated slices (masks or prompts)."""
        n = self.labels.shape[0]
        start, stop = (0, n) if slice_range is None else (int(v) for v in slice_range)
        if not 0 <= start < stop <= n:
            raise TileSAMError(
                f"slice_range {slice_range!r} must be (start, stop) with 0 <= start < stop <= {n}."
            )
        for z, given in sorted(annotations.items()):
            if isinstance(given, Mapping):
                self.prompts[z] = given
                self.annotated.setdefault(1, []).append(z)
                continue
            self.labels[z] = given
            for obj in np.unique(given[given > 0]).tolist():
                self.annotated.setdefault(int(obj), []).append(int(z))
        if not self.annotated:
            raise TileSAMError(
                "The seed mask is empty: draw or commit at least one object on a slice first."
            )
        seeds = {z for zs in self.annotated.values() for z in zs}
        outside = sorted(seeds - set(range(start, stop)))
        if outside:
            raise TileSAMError(
                f"Annotated slice(s) {outside} lie outside slice_range ({start}, {stop}); widen "
                "the range to include them."
            )
        self.start, self.stop = start, stop
        self.objects = sorted(self.annotated)
        self.total = sum(stop - start - len(zs) for zs in self.annotated.values())

    def answer_prompts(self, annotations: Mapping[int, Annotation]) -> None:
        """Answer the user's prompts: the tracker's mask on each prompted slice (object 1).
        A slice where the model sees no object is refused."""
        for z, parts in sorted(self.prompts.items()):
            step = self.tracker.annotate(self.tracker.new_track(), z, self.frames(z), **parts)
            mask = step.mask()
            if not step.present or not mask.any():
                raise TileSAMError(
                    f"The prompt on slice {z} finds no object there (object score "
                    f"{step.object_score:.2f}, {int(mask.sum())} pixels): memory propagation "
                    "starts from a slice showing the object. Click inside it, add positive "
                    "points or draw a box around it, or annotate another slice."
                )
            self.labels[z] = mask

    def propagate(self, obj: int) -> None:
        """Both directions for one object, each with its own track."""
        own = self.annotated[obj]
        tracks = [self._annotated_track(obj, own) for _ in range(2)]
        reached, up_stops = [], []  # each walk up: its last slice, its stop's index
        for i, a in enumerate(own):  # up: to the next annotation or the end of the range
            end = own[i + 1] - 1 if i + 1 < len(own) else self.stop - 1
            reached.append(self._walk(_Walk(obj, +1, a, end, self._mask(obj, a), tracks[0])))
            up_stops.append(len(self.stops) - 1)
        for i in range(len(own) - 1, -1, -1):  # down: to the first slice not reached
            end = reached[i - 1] + 1 if i else self.start
            if i and end >= own[i]:
                continue  # the walk up from the annotation below filled the gap
            last = self._walk(_Walk(obj, -1, own[i], end, self._mask(obj, own[i]), tracks[1]))
            if i and self.fill_gaps and last - reached[i - 1] > 1:
                self._interpolate(obj, reached[i - 1], last, (up_stops[i - 1], -1))
        # Slices no walk reached still count towards the progress' total.
        self.expected += self.stop - self.start - len(own)
        self._count(self.expected - self.done)

    def _interpolate(self, obj: int, lower: int, upper: int, stops: tuple[int, int]) -> None:
        """The gap two stopped walks left between `lower` and `upper`, interpolated; their
        `stops` (indices) say so."""
        stop_if_cancelled(self.cancel)
        fill_between(self.labels, obj, lower, upper)
        for i in stops:
            self.stops[i] = replace(self.stops[i], filled=(lower + 1, upper - 1))

    def _mask(self, obj: int, z: int) -> np.ndarray:
        return self.labels[z] == obj

    def _annotated_track(self, obj: int, own: list[int]) -> Track:
        """A new track with every annotated slice of `obj` as a prompted frame."""
        track = self.tracker.new_track()
        for z in own:
            if z in self.prompts:
                self.tracker.annotate(track, z, self.frames(z), **self.prompts[z])
            else:
                self.tracker.annotate(track, z, self.frames(z), mask=self._mask(obj, z))
        return track

    def _walk(self, walk: _Walk) -> int:
        """Walk until `walk.end`, a stop or a slice taken; return the last slice written."""
        self._remember_contrast(walk, self._contrast(walk.seed, walk.mask))
        z = walk.seed + walk.step
        while walk.alive and (z <= walk.end if walk.step > 0 else z >= walk.end):
            self._advance(walk, z)
            z += walk.step
        if walk.alive:  # reached the range's end or the next annotation
            self.stops.append(Stop(walk.obj, walk.step, walk.last, "range", walk.seed))
        return walk.last

    def _advance(self, walk: _Walk, z: int) -> None:
        stop_if_cancelled(self.cancel)
        step = self.tracker.step(walk.track, z, self.frames(z), reverse=walk.step < 0)
        mask, window = unclaimed(step.mask(), self.labels[z])  # others' pixels never taken
        rules, score, measured = self.rules, float(step.iou), None
        reason = None if step.present else f"absent: object score {step.object_score:.2f} <= 0"
        reason = reason or rules.why_stop(walk.mask, mask, score)
        reason = reason or rules.why_less_sure(score, walk.surest)
        if reason is None:
            measured = self._contrast(z, mask)
            reason = rules.why_faded(None if measured is None else measured[0], walk.strongest)
        if reason is not None:
            walk.alive = False
            self.stops.append(Stop(walk.obj, walk.step, walk.last, reason, walk.seed))
            return
        self.labels[z][window][mask[window]] = walk.obj
        walk.mask, walk.last = mask, z
        walk.surest = score if walk.surest is None else max(walk.surest, score)
        self._remember_contrast(walk, measured)
        self._count(1)

    def _contrast(self, z: int, mask: np.ndarray) -> tuple[float, float] | None:
        if self.image is None or self.rules.min_contrast is None:
            return None
        return mask_contrast(self.image, z, mask, exclude=self.labels[z])

    @staticmethod
    def _remember_contrast(walk: _Walk, measured: tuple[float, float] | None) -> None:
        if measured is None:
            return
        difference, spread = measured
        stands_out = abs(difference) > FADE_DISTINCT * spread
        if stands_out and (walk.strongest is None or abs(difference) > abs(walk.strongest)):
            walk.strongest = difference

    def _count(self, n: int) -> None:
        self.done += n
        if self.callback is not None and n:
            self.callback(self.done, self.total)
