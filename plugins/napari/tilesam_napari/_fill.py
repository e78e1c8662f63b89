"""*Fill between slices* (``Shift+F``): each committed object's slices between its annotated
slices, interpolated from its masks there with no model, as 3D Slicer's segment editor
offers it.

The committed labels are the seed of ``tilesam.propagate_mask(..., method="interpolate")``,
run as *Propagate 3D* runs (`tilesam_napari._predict.propagate_steps`, in the dock widget's
job with progress and cancel). What it adds goes into ``committed_objects`` under each
object's own id, over background only, as one all-or-nothing commit that *Undo commit*
takes back. An object committed on one slice only is refused by the core, which names it,
and nothing changes.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np
from napari.utils.notifications import show_info

from tilesam.errors import Cancelled, TileSAMError
from tilesam.volumes.interpolate import INTERPOLATE
from tilesam_napari import _predict
from tilesam_napari._notify import walked

if TYPE_CHECKING:
    from tilesam.segment.session import Session
    from tilesam_napari._controller import Annotator
    from tilesam_napari._predict import Propagated


def seed(annotator: Annotator) -> tuple[Session, np.ndarray]:
    """The session and a copy of the committed labels, the seed (read now, in the GUI
    thread, so that what is painted meanwhile is never overwritten); raises for a 2D image
    or a removed ``committed_objects`` layer."""
    session = annotator.require_session()
    if session.source.n_slices == 1:
        raise TileSAMError(
            "Fill between slices needs a volume (ZYX image layer); this image is 2D."
        )
    return session, annotator.commits.snapshot()


def steps(
    session: Session, labels: np.ndarray, cancel: threading.Event | None = None
) -> Generator[tuple[int, int], None, Propagated]:
    """Interpolate between the annotated slices of each object of `labels`, yielding
    ``(done, total)`` slices; returns the labels volume (no stops: no walk is made). A set
    `cancel` raises `tilesam.errors.Cancelled` (the core's interpolation stops before the
    next gap, or it has ended): nothing is to be written."""
    cancelled = Cancelled("Fill between slices cancelled; nothing was written.")
    try:
        result = yield from _predict.propagate_steps(session, labels, cancel, method=INTERPOLATE)
    except Cancelled:  # the core's message speaks of a propagation
        raise cancelled from None
    if cancel is not None and cancel.is_set():
        raise cancelled
    return result


def keep(annotator: Annotator, session: Session, labels: np.ndarray, result: Propagated) -> int:
    """Write what `result` adds to the seed `labels` into ``committed_objects`` as one
    commit and say what was filled; returns the pixels written. Nothing is written if the
    annotator moved to another image (or session) meanwhile."""
    if annotator.session is not session:
        show_info("TileSAM: the image was set up again meanwhile: nothing was filled.")
        return 0
    added = np.where(labels == 0, result.labels, 0)
    written = annotator.commits.fill(added)
    walked(result.stops, result.warnings)
    show_info(_summary(added) if written else _NOTHING)
    return written


_NOTHING = (
    "TileSAM: nothing to fill: no committed object has slices left empty between its "
    "annotated slices."
)


def _summary(added: np.ndarray) -> str:
    """Which objects were filled on how many slices, and how to take it back."""
    slices: dict[int, list[int]] = {}
    for z in np.flatnonzero(added.reshape(len(added), -1).any(axis=1)):
        for obj in np.unique(added[z][added[z] > 0]).tolist():
            slices.setdefault(int(obj), []).append(int(z))
    said = [
        f"object {obj} on {len(zs)} slice{'s' * (len(zs) > 1)} ({zs[0]} to {zs[-1]})"
        for obj, zs in sorted(slices.items())
    ]
    return (
        f"TileSAM: filled between annotated slices: {'; '.join(said)} (Undo commit takes it back)."
    )
