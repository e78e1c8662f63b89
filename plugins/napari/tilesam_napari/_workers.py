"""Work off the Qt event loop: live segmentation, one-off answers (the ``M`` key's other
masks), and long jobs with progress and cancel.

Everything here runs the core in napari's worker threads and hands results back to the
GUI thread through Qt signals, so the viewer keeps answering while a tile is embedded
or a volume propagated. Errors come back as values and are shown as notifications,
never as a traceback dialog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import create_worker

from tilesam_napari._notify import report

#: Steps of long work: yields ``(done, total)`` (or a message for the GUI), returns a result.
Steps = Generator[Any, None, Any]


def _capture(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, exception)``: errors travel back as values."""
    try:
        return True, fn(*args)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a notification
        return False, exc


class LatestOnly:
    """Run ``compute(job)`` in a worker; requests made meanwhile collapse into one rerun.

    ``collect()`` (GUI thread) snapshots the job, or returns None for nothing to do;
    ``apply(result)`` shows it (GUI thread). Only the newest prompt matters, so a burst
    of edits costs at most one computation in flight plus one queued.

    ``quick(job)`` may answer in the GUI thread instead: a decoder pass over cached
    embeddings takes tens of milliseconds, while in a worker it can take several times
    longer, because every one of its many small torch calls must win the GIL back from the
    busy GUI thread (Python switches threads every 5 ms). It returns None (the job goes to
    a worker) or ``(result, complete)``: the result is shown, and an incomplete one (an
    object reaching tiles not embedded yet) is computed again in a worker. ``on_error()``
    runs (GUI thread) after a failure of either is reported.
    """

    def __init__(
        self,
        collect: Callable[[], Any],
        compute: Callable[[Any], Any],
        apply: Callable[[Any], None],
        quick: Callable[[Any], tuple[Any, bool] | None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self._collect, self._compute, self._apply = collect, compute, apply
        self._quick = quick or (lambda job: None)
        self._on_error = on_error or (lambda: None)
        self._busy = False
        self._dirty = False
        self.worker = None

    @property
    def busy(self) -> bool:
        """A computation is in flight or queued."""
        return self._busy or self._dirty

    def request(self) -> None:
        """Ask for a computation of the current state."""
        if self._busy:
            self._dirty = True
            return
        self._start()

    def _start(self) -> None:
        self._dirty = False
        try:
            job = self._collect()
        except Exception as exc:  # noqa: BLE001 - a bad prompt is a notification
            report(exc)
            return
        if job is None:
            return
        ok, answer = _capture(self._quick, job)
        if not ok:
            self._returned((False, answer))
            return
        if answer is not None:
            result, complete = answer
            self._returned((True, result))
            if complete:
                return
        self._busy = True
        self.worker = _in_worker(self._compute, job, self._returned, self._finished)

    def _returned(self, outcome: tuple[bool, Any]) -> None:
        # A newer request supersedes this result: don't flash a stale mask.
        if not self._dirty:
            _deliver(outcome, self._apply, self._on_error)

    def _finished(self) -> None:
        self._busy = False
        if self._dirty:
            self._start()


class OneAtATime:
    """Run ``compute(job)`` in a worker, one job at a time: a `start` while one is in
    flight is refused, so pressing a key again does not queue the same work twice.

    ``apply(result)`` shows the result (GUI thread); it decides itself whether the result
    is still wanted. A failure is reported as a notification.
    """

    def __init__(self, compute: Callable[[Any], Any], apply: Callable[[Any], None]) -> None:
        self._compute, self._apply = compute, apply
        self.worker = None

    @property
    def busy(self) -> bool:
        """A computation is in flight."""
        return self.worker is not None

    def start(self, job: Any) -> bool:
        """Compute `job` in a worker; False (and nothing started) while one is in flight."""
        if self.busy:
            return False
        self.worker = _in_worker(self._compute, job, self._returned, self._finished)
        return True

    def _returned(self, outcome: tuple[bool, Any]) -> None:
        _deliver(outcome, self._apply)

    def _finished(self) -> None:
        self.worker = None


def _in_worker(
    compute: Callable[[Any], Any],
    job: Any,
    returned: Callable[[tuple[bool, Any]], None],
    finished: Callable[[], None],
) -> Any:
    """Start ``compute(job)`` in a napari worker; `returned` gets its `_capture` outcome,
    then `finished` runs (both in the GUI thread). Returns the worker."""
    worker = create_worker(_capture, compute, job, _start_thread=False)
    worker.returned.connect(returned)
    worker.finished.connect(finished)
    worker.start()
    return worker


def _deliver(
    outcome: tuple[bool, Any],
    apply: Callable[[Any], None],
    on_error: Callable[[], None] = lambda: None,
) -> None:
    """``apply`` a result, or report the error and call `on_error`."""
    ok, value = outcome
    if ok:
        apply(value)
    else:
        report(value)
        on_error()


class Job:
    """A long job (embedding, propagation) in a worker thread, with progress and cancel.

    ``steps(cancel)`` is a generator yielding ``(done, total)`` and returning a result;
    ``on_progress(done, total, seconds_left)`` and ``on_done(result)`` run in the GUI
    thread, and so does ``on_message(value)`` for anything else the steps yield (e.g. a
    session opened in the worker, to attach to the viewer). `cancel` is a
    ``threading.Event`` the core checks between tiles or slices, so
    a cancelled job stops cleanly and leaves every finished tile in the cache.
    """

    def __init__(
        self,
        steps: Callable[[threading.Event], Steps],
        *,
        on_progress: Callable[[int, int, float | None], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        on_message: Callable[[Any], None] | None = None,
    ) -> None:
        self.cancel_event = threading.Event()
        self._steps = steps
        self._on_progress, self._on_done, self._on_message = on_progress, on_done, on_message
        self.finished = False
        self._start: tuple[float, int] | None = None
        self.worker = create_worker(self._run, _start_thread=False)
        self.worker.yielded.connect(self._progress)
        self.worker.returned.connect(self._returned)
        self.worker.finished.connect(self._mark_finished)
        if on_finish is not None:
            self.worker.finished.connect(on_finish)

    def start(self) -> Job:
        """Start the worker thread; returns this job."""
        self.worker.start()
        return self

    def cancel(self) -> None:
        """Stop after the tile or slice in progress."""
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        """Started and not finished yet (False once the GUI heard it finish)."""
        return not self.finished

    def _mark_finished(self) -> None:
        self.finished = True

    def _run(self) -> Generator[Any, None, tuple[bool, Any]]:
        try:
            result = yield from self._steps(self.cancel_event)
        except Exception as exc:  # noqa: BLE001 - shown as a notification in the GUI thread
            return False, exc
        return True, result

    def _progress(self, value: Any) -> None:
        if not isinstance(value, tuple):
            if self._on_message is not None:
                self._on_message(value)
            return
        done, total = value
        now = time.perf_counter()
        if self._start is None:
            self._start = (now, done)
        t0, d0 = self._start
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else None
        left = (total - done) / rate if rate else None
        if self._on_progress is not None:
            self._on_progress(done, total, left)

    def _returned(self, outcome: tuple[bool, Any]) -> None:
        ok, value = outcome
        if not ok:
            report(value)
        elif self._on_done is not None:
            self._on_done(value)
