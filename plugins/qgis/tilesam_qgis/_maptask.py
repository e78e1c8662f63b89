"""Long work off the GUI thread: `OpenTask` opens a session, `EmbedTask` fills its cache,
each in a `QgsTask`.

QGIS's task manager runs them in a worker thread and shows them in the status bar, with
a cancel button; the canvas stays responsive. Cancelling an embedding stops between
batches of tiles: what is done stays in the cache, and the next run resumes. Opening
cannot stop half-way (loading a checkpoint, sampling the raster): an opening given up
runs to its end and closes what it opened.

A session is closed only once no task uses it (:func:`close_session`): a raster removed
from the project, new settings or the plugin unloaded cancel its embedding and close the
session when the embedding stops, never under a task still reading the raster.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qgis.core import QgsApplication, QgsTask

from tilesam.errors import TileSAMError
from tilesam_qgis._mapsession import MapSettings, open_session

if TYPE_CHECKING:
    from tilesam.segment.session import Session

#: One session opens at a time: an opening given up still runs, and the next one (the
#: same raster, the same new cache) must not create the cache beside it.
_ONE_AT_A_TIME = threading.Lock()
#: Openings not finished yet: QGIS's task manager keeps no reference to a Python task,
#: and one given up by its dock (closed, unloaded) must live until its `run` returns.
_RUNNING: set[QgsTask] = set()
#: The tasks using each session (kept in the GUI thread; it also keeps their Python objects
#: alive once their dock is gone), and the sessions closed meanwhile, to close when the last
#: of their tasks ends.
_USERS: dict[Session, set[QgsTask]] = {}
_CLOSING: set[Session] = set()


def use_session(session: Session, task: QgsTask) -> None:  # the GUI thread
    """Keep `session` open for `task` until :func:`release_session` (when it ends)."""
    _USERS.setdefault(session, set()).add(task)


def release_session(session: Session, task: QgsTask) -> None:  # the GUI thread
    """`task` has ended: close `session` if it was closed meanwhile and no task is left."""
    users = _USERS.get(session, set())
    users.discard(task)
    if users:
        return
    _USERS.pop(session, None)
    if session in _CLOSING:
        _CLOSING.discard(session)
        session.close()


def close_session(session: Session) -> None:  # the GUI thread
    """Close `session` now where no task uses it; else cancel its tasks (an embedding stops
    after its current batch, keeping what is done) and close it once the last has ended."""
    users = _USERS.get(session)
    if not users:
        session.close()
        return
    _CLOSING.add(session)
    for task in list(users):  # a task not started yet may end (and release) at once
        task.cancel()


class OpenTask(QgsTask):
    """:func:`~tilesam_qgis._mapsession.open_session` in a worker thread: on a new cache
    the model loaded and the raster's statistics sampled; a cache made for the model
    reopens without loading it (seconds for the hash of a large weights file at most).

    Parameters
    ----------
    settings : MapSettings
        What the session opens.
    done : callable
        Called in the GUI thread when the task ends, unless :meth:`discard` came first:
        ``done(task)``; `task.session` is the open session (None on failure or cancel),
        `task.error` the message of a failure (None otherwise).
    """

    def __init__(self, settings: MapSettings, done: Callable[[OpenTask], None]) -> None:
        name = Path(settings.raster).name
        super().__init__(f"TileSAM: opening {name} with {settings.model}", QgsTask.CanCancel)
        self.settings = settings
        self.session: Session | None = None
        self.error: str | None = None
        self._done: Callable[[OpenTask], None] | None = done
        self._lock = threading.Lock()  # `run` (worker) against `discard` (GUI thread)

    def start(self) -> OpenTask:
        """Hand the task to QGIS's task manager (it runs when a worker thread is free)."""
        _RUNNING.add(self)
        QgsApplication.taskManager().addTask(self)
        return self

    def run(self) -> bool:  # the worker thread
        """Open the session; keep it, or close it if the task was discarded meanwhile."""
        with _ONE_AT_A_TIME:
            try:
                session = open_session(self.settings)
            except Exception as err:  # shown in the GUI thread by `done`
                known = isinstance(err, TileSAMError)  # its message says what to do
                self.error = str(err) if known else f"{type(err).__name__}: {err}"
                return False
            with self._lock:
                wanted = self._done is not None
                self.session = session if wanted else None
            if not wanted:
                session.close()
        return not self.isCanceled()

    def discard(self) -> None:  # the GUI thread
        """Give the opening up: call no one, and close the session (now if it is open,
        else in `run` once it is)."""
        with self._lock:
            self._done = None
            session, self.session = self.session, None
        if session is not None:
            session.close()
        self.cancel()

    def finished(self, result: bool) -> None:  # the GUI thread
        """Hand the outcome to `done`."""
        _RUNNING.discard(self)
        if self._done is not None:
            self._done(self)


class EmbedTask(QgsTask):
    """``session.embed`` for the whole raster, with progress and cancel.

    Parameters
    ----------
    session : tilesam.Session
        The session whose missing tiles are embedded into its cache; from :meth:`start`
        to the task's end, :func:`close_session` leaves it open.
    done : callable, optional
        Called in the GUI thread when the task ends: ``done(task)``; `task.error` holds
        the message of a failure (None otherwise), `task.embedded` the tiles it embedded.
    """

    def __init__(self, session: Session, done: Callable[[EmbedTask], None] | None = None):
        super().__init__("TileSAM: computing embeddings", QgsTask.CanCancel)
        self.session = session
        self.embedded = 0
        self.tiles = (0, 0)  # (done, total) of this run
        self.error: str | None = None
        self._done = done
        # The core's cancel flag: it is read from the core's own reading thread too, where
        # no Qt object may be touched; set by `cancel` and by the task's thread.
        self.stop = threading.Event()

    def start(self) -> EmbedTask:
        """Hand the task to QGIS's task manager, its session kept open until it ends."""
        use_session(self.session, self)
        QgsApplication.taskManager().addTask(self)
        return self

    def cancel(self) -> None:
        """Stop after the current batch of tiles (what is done stays in the cache)."""
        self.stop.set()
        super().cancel()

    def run(self) -> bool:  # the worker thread
        """Embed the missing tiles; False on failure or cancel."""
        if self.isCanceled():
            return False
        try:
            self.embedded = self.session.embed(
                progress=False, callback=self._report, cancel=self.stop
            )
        except Exception as err:  # shown in the GUI thread by `finished`
            self.error = f"{type(err).__name__}: {err}"
            return False
        return not self.isCanceled()

    def _report(self, done: int, total: int) -> None:
        self.tiles = (done, total)
        if self.isCanceled():  # cancelled by QGIS (the task manager's button)
            self.stop.set()
        self.setProgress(100.0 * done / max(total, 1))

    def forget(self) -> None:
        """Call no one any more, on progress or when the task ends (its dock is going away,
        and the task may run a batch longer)."""
        self._done = None
        try:
            self.progressChanged.disconnect()
        except TypeError:  # nothing was connected
            pass

    def finished(self, result: bool) -> None:  # the GUI thread
        """Hand the outcome to `done`, then let the session go (closed if it was meanwhile)."""
        try:
            if self._done is not None:
                self._done(self)
        finally:
            release_session(self.session, self)
