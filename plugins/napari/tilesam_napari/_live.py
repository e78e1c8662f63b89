"""The live object's computation: a prompt read from the layers, answered by the core.

`Annotator` hands a `LiveJob` to `tilesam_napari._workers.LatestOnly`, which answers it
with `from_cache` in the viewer's thread where it can and with `whole` in a worker; the
answers say whether the object is whole, so that a commit never takes a part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tilesam_napari import _predict

if TYPE_CHECKING:
    from tilesam.decode.prompt import Prompt
    from tilesam.segment.session import Session
    from tilesam_napari._labels import Window


@dataclass(frozen=True)
class LiveJob:
    """What a live segmentation works on: the prompt, its slice (None in 2D), the version
    of the prompt layers it was read from, and the session."""

    prompt: Prompt
    z: int | None
    version: int
    session: Session


@dataclass(frozen=True)
class LiveAnswer:
    """A live segmentation's object: its windows, and whether it is whole (False: answered
    from the cache alone while a worker embeds the tiles it goes on into)."""

    job: LiveJob
    windows: list[Window]
    whole: bool


def from_cache(job: LiveJob) -> tuple[LiveAnswer, bool] | None:
    """The answer from the cache alone and whether it is whole (the object may go on into
    tiles not embedded yet). None where no tile the prompt starts in is embedded: a worker
    embeds it (meanwhile the mask shown stays)."""
    result, window = _predict.segment(job.session, job.prompt, job.z, embed_missing=False)
    if not result.tiles and result.waiting:
        return None
    whole = not result.waiting
    return LiveAnswer(job, [window], whole), whole


def whole(job: LiveJob) -> LiveAnswer:
    """The whole object, embedding the tiles it reaches that are not embedded yet."""
    return LiveAnswer(job, [_predict.segment(job.session, job.prompt, job.z)[1]], True)
