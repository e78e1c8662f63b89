"""What the core answers for a prompt: masks as windows, alternatives, propagation.

Functions over a `tilesam.Session` and prompts in image pixels, free of viewer state, so
that they run in the GUI thread or a worker alike.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.errors import TileSAMWarning
from tilesam_napari._labels import Window

if TYPE_CHECKING:
    from tilesam.automatic import AutoResult
    from tilesam.decode.prompt import Prompt
    from tilesam.segment.result import SegmentResult
    from tilesam.segment.session import Session
    from tilesam.volumes.stops import Stop


#: The warnings registry of those issued again by `_tilesam_warnings` ("default": once).
_REISSUED: dict[Any, Any] = {}


@dataclass(frozen=True)
class Propagated:
    """A propagation's answer: the labels volume, where and why each walk stopped
    (`tilesam.volumes.stops.Stop`), the texts of the `TileSAMWarning` it raised (e.g.
    walks that stopped within two slices of their seed), and a note on what was propagated
    (empty: the current object)."""

    labels: np.ndarray
    stops: list[Stop]
    warnings: tuple[str, ...] = ()
    note: str = ""


def segment(
    session: Session, prompt: Prompt, z: int | None, *, embed_missing: bool = True
) -> tuple[SegmentResult, Window]:
    """`Session.segment` for `prompt` on slice `z` (None in 2D): the result and its window
    (``embed_missing=False``: from the cache alone, see `Session.segment`)."""
    result = session.segment(prompt, z=z or 0, embed_missing=embed_missing)
    return result, Window(z, result.offset, result.window)


def candidate_masks(session: Session, prompt: Prompt, z: int | None) -> list[Window]:
    """The model's alternative masks for the prompt in the tile it falls in, best first."""
    return [Window(z, r.offset, r.window) for r in session.candidates(prompt, z=z or 0)]


def embed_steps(
    session: Session, cancel: threading.Event | None = None, batch: int = 2
) -> Generator[tuple[int, int], None, int]:
    """Embed the missing tiles of `session` with `Session.embed` in a helper thread,
    yielding ``(done, total)`` tiles of the image; returns how many are done. Stops cleanly
    between batches of `batch` tiles when `cancel` is set (the tiles done are kept)."""
    start, total = session.n_done, session.n_tiles
    yield start, total

    def run(callback, cancel):
        from tilesam.cache.embed import default_batch_size

        embed = lambda done, _: callback(start + done, total)  # noqa: E731
        size = min(batch, default_batch_size(session.model))  # one at a time for ViT-B and up
        session.embed(progress=False, batch_size=size, callback=embed, cancel=cancel)
        return session.n_done

    return (yield from _in_thread(run, cancel, "tilesam-embed"))


def propagate_steps(
    session: Session,
    seed: np.ndarray,
    cancel: threading.Event | None = None,
    rules: Mapping[str, float | None] | None = None,
    **options: Any,
) -> Generator[tuple[int, int], None, Propagated]:
    """Run `tilesam.propagate_mask` from a seed labels volume with the stop `rules` (a
    mapping of `tilesam.volumes.stop_rules.StopRules` thresholds, None: the core's) and its
    other `options` (``method``: ``"interpolate"`` asks no model; ``fill_gaps``) in a
    helper thread, yielding its ``(done, total)`` progress; returns the labels volume, where
    each walk stopped and the warnings it raised (to be shown, not lost in a thread)."""
    import tilesam

    def run(callback, cancel):
        # The session's cache: slices are embedded once, for both uses.
        given = {"session": session, "callback": callback, "cancel": cancel, "details": True}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TileSAMWarning)  # each run's, however alike
            result = tilesam.propagate_mask(
                session.source, mask=seed, rules=rules, **given, **options
            )
        return Propagated(result.labels, list(result.stops), _tilesam_warnings(caught))

    return (yield from _in_thread(run, cancel, "tilesam-propagate"))


def _tilesam_warnings(caught: list[warnings.WarningMessage]) -> tuple[str, ...]:
    """The texts of the TileSAM warnings among `caught`; any other is issued again as it
    would have been (`warnings.catch_warnings` records every thread's meanwhile)."""
    texts = []
    for w in caught:
        if issubclass(w.category, TileSAMWarning):
            texts.append(str(w.message))
        else:
            where = {"registry": _REISSUED, "source": w.source}
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, **where)
    return tuple(dict.fromkeys(texts))


def everything_steps(
    session: Session, cancel: threading.Event | None = None, **settings: Any
) -> Generator[tuple[int, int], None, AutoResult]:
    """`Session.segment_everything` over the whole image (every slice of a volume, linked
    into 3D objects) with `settings` (``mode``: None for the core's default for the
    session's model; ``points_per_side``, read by grid mode only), in a helper thread,
    yielding its ``(done, total)`` tiles (the embedding of missing tiles, then each tile
    decoded); returns the `tilesam.automatic.AutoResult` (its ``mode`` the one used). A set
    `cancel` stops it between tiles with `tilesam.errors.Cancelled`, and nothing is kept."""

    def run(callback, cancel):
        return session.segment_everything(callback=callback, cancel=cancel, **settings)

    return (yield from _in_thread(run, cancel, "tilesam-auto"))


def _in_thread(
    run: Callable[[Callable[[int, int], None], threading.Event], Any],
    cancel: threading.Event | None,
    name: str,
) -> Generator[tuple[int, int], None, Any]:
    """Run ``run(callback, cancel)`` in a helper thread, yielding the ``(done, total)`` it
    reports; returns its result, or raises its error here.

    The core reports progress through a callback; the helper thread turns it into this
    generator, which a napari worker (or a plain loop) can consume.
    """
    progress: queue.Queue = queue.Queue()
    outcome: list[Any] = []
    cancel = cancel or threading.Event()

    def target() -> None:
        try:
            outcome.append(run(lambda done, total: progress.put((done, total)), cancel))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            outcome.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    try:
        while thread.is_alive() or not progress.empty():
            try:
                yield progress.get(timeout=0.05)
            except queue.Empty:
                continue
    finally:
        # A consumer that stops early (napari quits its workers when the viewer closes)
        # stops the work too, rather than leaving it to die with the interpreter mid-torch.
        if thread.is_alive():
            cancel.set()
        thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def run_to_end(steps: Generator[Any, None, Any]) -> Any:
    """Exhaust a steps generator in this thread; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
