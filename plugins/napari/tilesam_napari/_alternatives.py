"""The model's alternative masks for the current object, cycled with the ``M`` key.

Index 0 is the object as segmented (stitched across tiles); the others are the model's
masks for its prompt in the tile the prompt falls in (`Session.candidates`). They are
asked of the core in a worker on the first press, because that tile may have to be
embedded first (seconds of encoder work the viewer must not wait for), and shown when they
come, unless the object changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from napari.utils.notifications import show_info

from tilesam.errors import TileSAMError
from tilesam_napari import _predict
from tilesam_napari._workers import OneAtATime

if TYPE_CHECKING:
    from tilesam_napari._labels import Window
    from tilesam_napari._live import LiveJob


class Alternatives:
    """The masks `M` cycles through and the one shown (``choice``; 0: the object as
    segmented).

    ``draw(windows)`` shows a mask; ``wanted(job)`` says whether masks computed for `job`
    are still for the object on screen (the prompts have not changed since). Both run in
    the GUI thread.
    """

    def __init__(
        self, draw: Callable[[list[Window]], None], wanted: Callable[[LiveJob], bool]
    ) -> None:
        self._draw, self._wanted = draw, wanted
        self.masks: list[list[Window]] = []
        self.choice = 0
        self._worker = OneAtATime(_candidates, self._arrived)

    @property
    def busy(self) -> bool:
        """The model's masks are being computed."""
        return self._worker.busy

    def show(self, windows: list[Window]) -> None:
        """Draw a new current object (``[]``: none) as mask 0; its alternatives are asked
        for afresh."""
        self.masks, self.choice = ([windows] if windows else []), 0
        self._draw(windows)

    def next(self, job: LiveJob) -> int | None:
        """Show the next mask; returns its index, or None where the model's masks for
        `job` (the current object's) are first asked for, in a worker: the next is shown
        when they come. Asked again meanwhile, nothing more is started."""
        if len(self.masks) > 1:
            self._step()
            return self.choice
        if job.prompt is None:  # a propagation's object: no one prompt has other masks
            raise TileSAMError(
                "M shows the model's other masks for a prompt on one slice; the current "
                "object is a propagation's: prompt the object on a slice to choose there."
            )
        if not self._worker.start(job):
            show_info("TileSAM: the other masks are still being computed; shown when ready.")
        return None

    def _arrived(self, answer: tuple[LiveJob, list[Window]]) -> None:
        job, windows = answer
        if not self._wanted(job) or len(self.masks) != 1:
            return  # the prompts (or the object) changed meanwhile: these are stale
        self.masks += [[w] for w in windows]
        self._step()

    def _step(self) -> None:
        self.choice = (self.choice + 1) % len(self.masks)
        self._draw(self.masks[self.choice])


def _candidates(job: LiveJob) -> tuple[LiveJob, list[Window]]:
    """The model's masks for the job's prompt (worker thread), with the job they answer."""
    return job, _predict.candidate_masks(job.session, job.prompt, job.z)
