"""Long work off the GUI thread: `EmbedTask` fills a session's cache in a `QgsTask`.

QGIS's task manager runs it in a worker thread and shows it in the status bar, with
its progress and a cancel button; the canvas stays responsive. Cancelling stops
between batches of tiles: what is done stays in the cache, and the next run resumes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from qgis.core import QgsTask

if TYPE_CHECKING:
    from tilesam.segment.session import Session


class EmbedTask(QgsTask):
    """``session.embed`` for the whole raster, with progress and cancel.

    Parameters
    ----------
    session : tilesam.Session
        The session whose missing tiles are embedded into its cache.
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
        """Call no one when the task ends (its dock is going away)."""
        self._done = None

    def finished(self, result: bool) -> None:  # the GUI thread
        """Hand the outcome to `done`."""
        if self._done is not None:
            self._done(self)
