"""The thresholds of segment-everything, checked once, as plain arguments.

Every mode takes the same :class:`AutoSettings`; a mode reads the fields it uses. The
defaults of the filters were chosen for the bundled ``tiny`` on *validation* images (the
Coelho 2009 nuclei outside the reported split, see ``docs/automatic.md``), never on the
images the figures are reported on.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from tilesam.errors import TileSAMError

#: The modes of segment-everything (``docs/automatic.md``).
MODES = ("grid", "instance", "prompts")


@dataclass(frozen=True)
class AutoSettings:
    """Thresholds of segment-everything (see ``docs/automatic.md`` for how each was chosen).

    Parameters
    ----------
    points_per_side : int
        Grid mode: positive points per side of the model input (SAM's convention), so the
        grid's step in image pixels is the model input's side over this, divided by the
        magnification a tile is embedded at. 16 on a 1024-pixel tile: one point every 64
        pixels.
    min_score : float
        Keep masks whose predicted IoU (the decoder's own score) is at least this, 0 to 1;
        in instance mode, objects whose mean foreground probability is at least this.
    min_stability : float
        Keep masks whose stability is at least this, 0 to 1: the IoU of the mask at the
        mask threshold + `stability_offset` and at the threshold - `stability_offset` on the
        logits (SAM's automatic mask generator).
    stability_offset : float
        The logit offset of the stability score (SAM: 1.0), > 0.
    nms_iou : float
        Non-maximum suppression: a mask whose IoU with a better-scored kept one exceeds this
        is dropped, within and across tiles. 0 to 1.
    min_size : int
        Objects (and pieces of objects) smaller than this many pixels are removed.
    max_hole : int
        Holes in an object up to this many pixels are filled.
    max_area : float
        Grid mode: masks covering more than this fraction of their tile are dropped (a click
        on the background answers with the background), 0 to 1.
    skip_covered : bool
        Grid mode: a grid point inside a mask already kept in its tile is not decoded (the
        points are visited coarse to fine): the same objects for far fewer decoder calls.
    borders : str
        How objects cut by tile borders become one: ``"merge"`` the pieces neighbouring
        tiles found (:mod:`tilesam.automatic.borders`), or ``"follow"`` each mask into the
        next tile as a click is (:func:`tilesam.segment.stitch.stitch_segment`).
    merge_iou : float
        ``"merge"``: pieces of neighbouring tiles are one object when their IoU where both
        tiles see the image is at least this, 0 to 1.
    max_tiles : int
        ``"follow"``: tiles one object may be followed across.
    link_iou : float
        Volumes: pieces on neighbouring slices with at least this IoU are one object.
    foreground : float
        Instance and prompts modes: pixels whose foreground probability (the instance head's)
        reaches this are in objects, 0 to 1.
    centre_distance, boundary_distance : float
        Instance and prompts modes: seeds are where the head's centre distance and boundary
        distance (0 at an object's centre / deep inside, 1 at its edge) are both below
        these, 0 to 1.
    min_cut_boundary : float
        Instance and prompts modes: touching objects whose shared line has a mean boundary
        distance below this are one object cut in two (two seeds in it) and are merged; 0
        never merges, 0 to 1.
    min_seed : int
        Instance and prompts modes: seeds of fewer pixels are noise and dropped (each seed
        becomes an object). In pixels of the model input, so that it means the same at
        every magnification (a 256-pixel image enlarged 4 times: 16 times fewer image
        pixels).
    instance_head : str, optional
        Instance and prompts modes: the instance head file (``tilesam train
        --instance-head`` writes ``RUN/instance_head.pt``); default: the head bundled with
        the model (``tiny`` has one).

    Examples
    --------
    >>> AutoSettings(min_score=0.6).min_score
    0.6
    >>> AutoSettings(min_score=1.5)
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: min_score must be a number from 0 to 1, got 1.5.
    """

    points_per_side: int = 32
    min_score: float = 0.5
    min_stability: float = 0.7
    stability_offset: float = 1.0
    nms_iou: float = 0.2
    min_size: int = 25
    max_hole: int = 25
    max_area: float = 0.5
    skip_covered: bool = True
    borders: str = "merge"
    merge_iou: float = 0.5
    max_tiles: int = 16
    link_iou: float = 0.3
    foreground: float = 0.3
    centre_distance: float = 0.5
    boundary_distance: float = 0.5
    min_seed: int = 64
    min_cut_boundary: float = 0.8
    instance_head: str | None = None

    def __post_init__(self) -> None:
        names = (
            "min_score",
            "min_stability",
            "nms_iou",
            "max_area",
            "merge_iou",
            "link_iou",
            "foreground",
            "centre_distance",
            "boundary_distance",
            "min_cut_boundary",
        )
        for name in names:
            _fraction(name, getattr(self, name))
        whole = (("points_per_side", 1), ("min_size", 0), ("max_hole", 0), ("min_seed", 1))
        for name, low in whole:
            _whole(name, getattr(self, name), low)
        _whole("max_tiles", self.max_tiles, 1)
        offset = self.stability_offset
        if not (_is_number(offset) and offset > 0):
            raise TileSAMError(f"stability_offset must be a number > 0, got {offset!r}.")
        if self.borders not in ("merge", "follow"):
            raise TileSAMError(f"borders must be 'merge' or 'follow', got {self.borders!r}.")
        head = self.instance_head
        if head is not None and not isinstance(head, (str, os.PathLike)):
            raise TileSAMError(f"instance_head must be a file path, got {head!r}.")
        if head is not None:
            object.__setattr__(self, "instance_head", os.fspath(head))
        if not isinstance(self.skip_covered, bool):
            raise TileSAMError(f"skip_covered must be True or False, got {self.skip_covered!r}.")

    @classmethod
    def make(cls, **options: Any) -> AutoSettings:
        """Settings from keyword options, None meaning the default; an unknown name is
        refused with the list of known ones.

        >>> AutoSettings.make(min_size=None, nms_iou=0.4).nms_iou
        0.4
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TileSAMError(
                f"Unknown segment-everything option(s) {', '.join(unknown)}: use "
                f"{', '.join(sorted(known))}."
            )
        return cls(**{k: v for k, v in options.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dictionary (for a report or a JSON file)."""
        return asdict(self)


def check_mode(mode: str) -> str:
    """`mode` if it is one of :data:`MODES`, else one clear error.

    >>> check_mode("instance")
    'instance'
    >>> check_mode("watershed")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: Unknown mode 'watershed' of segment-everything: use one of...
    """
    if mode in MODES:
        return mode
    raise TileSAMError(f"Unknown mode {mode!r} of segment-everything: use one of {MODES}.")


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _fraction(name: str, value: Any) -> None:
    if not (_is_number(value) and 0 <= value <= 1):
        raise TileSAMError(f"{name} must be a number from 0 to 1, got {value!r}.")


def _whole(name: str, value: Any, low: int) -> None:
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not (whole and value >= low):
        raise TileSAMError(f"{name} must be a whole number >= {low}, got {value!r}.")
