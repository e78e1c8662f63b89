"""What *Propagate 3D* (``Shift+S``) propagates: the current object, or, when there is none,
the object selected in ``committed_objects`` from all the slices it is on.

`tilesam.propagate_mask` walks from every annotated slice of a seed's object, both ways,
and interpolates the gap two walks leave when they stop before meeting (``fill_gaps``): an
object committed on slices 10, 16 and 22 (``C``, then ``Alt+A``) is propagated between them
and beyond its first and last. The result is shown as the current object, as for a current
object's propagation: ``Alt+A`` adds it to that object (over background only), ``C``
commits it as a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam_napari import _predict

if TYPE_CHECKING:
    from napari.layers import Image

    from tilesam.segment.session import Session
    from tilesam_napari._commits import Commits
    from tilesam_napari._labels import Window
    from tilesam_napari._predict import Propagated

#: Nothing to propagate (``{why}``: why no committed object is selected either).
NOTHING = (
    "No current object to propagate, and {why}: click on an object first, or select a "
    "committed object (its label number in committed_objects) to propagate it from all the "
    "slices it is on."
)


@dataclass(frozen=True)
class Seed:
    """A propagation's seed labels volume (read in the GUI thread) and the session it runs
    in; `committed`: the id of the committed object it is (None: the current object)."""

    session: Session
    labels: np.ndarray
    committed: int | None = None


def seed(session: Session, image: Image, current: Sequence[Window], commits: Commits) -> Seed:
    """The `current` object (one window per slice) of the volume `image` as a seed, or when
    there is none the object selected in `commits`' layer, all of it; raise when there is
    neither, or the image is 2D."""
    if session.source.n_slices == 1 or image.ndim != 3:
        raise TileSAMError(
            "Propagation needs a volume (ZYX image layer); this image is 2D. Use commit "
            "(C) to keep the object instead."
        )
    if not current:
        committed, labels = commits.selected_object(NOTHING)
        return Seed(session, labels, committed)
    labels = np.zeros(session.source.spatial_shape, np.uint8)
    for w in current:
        labels[w.region] |= w.mask
    return Seed(session, labels)


def steps(
    seed: Seed, cancel: threading.Event | None = None, **options: Any
) -> Generator[tuple[int, int], None, Propagated]:
    """Propagate `seed` with `tilesam.propagate_mask` and its `options` (see
    `tilesam_napari._predict.propagate_steps`), yielding ``(done, total)`` slices; a
    committed object's result notes which it was, and that ``Alt+A`` adds to it."""
    result = yield from _predict.propagate_steps(seed.session, seed.labels, cancel, **options)
    if seed.committed is None:
        return result
    note = (
        f"TileSAM: propagated committed object {seed.committed} from all the slices it is on; "
        "Alt+A adds the result to it."
    )
    return replace(result, note=note)
