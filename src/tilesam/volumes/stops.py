"""How a walk through a volume ended, said to the user.

Every walk (one object, one direction) ends somewhere: at the end of the range or where it
met the walk from its other annotation, or on the first slice where a
:class:`~tilesam.volumes.stop_rules.StopRules` rule refused the mask. A :class:`Stop` keeps
where and why, and :meth:`Stop.describe` says it in one line with the threshold (and the
``tilesam propagate`` option) that would take the walk further. A walk that stops within two
slices of its seed usually means the rules or the seed's mask do not fit the data, not that
the object is that thin: :func:`warn_early_stops` says so once per propagation, while the
labels are still returned and written. Two walks between annotations that both stopped
before meeting leave a gap, interpolated from their last masks: their stops say so
(``filled``), and are not early, since the object's slices between the annotations are all
written.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from tilesam.errors import TileSAMWarning
from tilesam.volumes.stop_rules import rule_hint


@dataclass(frozen=True)
class Stop:
    """Where one walk ended: the object, the direction (+1 / -1), the last slice it wrote,
    why it stopped (``"range"`` at the end of the range or a meeting walk), the annotated
    slice it started from and, if it stopped short of the walk coming the other way, the
    slices ``(first, last)`` interpolated between them.

    Examples
    --------
    >>> stop = Stop(1, -1, 12, "less sure: predicted IoU 0.50 < 0.8 x 0.90", seed=15)
    >>> print(stop.describe())  # doctest: +NORMALIZE_WHITESPACE
    object 1, towards lower slices: stopped after slice 12, 3 slices from its seed (slice
    15); slice 11 broke a rule (less sure: predicted IoU 0.50 < 0.8 x 0.90); to go
    further, lower StopRules.min_score_ratio (--min-score-ratio; 0 turns the rule off)
    """

    obj: int
    step: int
    last: int
    reason: str
    seed: int
    filled: tuple[int, int] | None = None

    @property
    def early(self) -> bool:
        """Stopped by a rule within two slices of its seed (the slice it could not take is
        the seed's neighbour or the one after), with no interpolation after it."""
        return self.reason != "range" and abs(self.last - self.seed) <= 1 and not self.filled

    def describe(self) -> str:
        """One line for the user: where, why, and what to change to go further."""
        side = "higher" if self.step > 0 else "lower"
        where = f"object {self.obj}, towards {side} slices"
        if self.reason == "range":
            return f"{where}: reached slice {self.last}, the end of the range or the other walk"
        done = abs(self.last - self.seed)
        gone = "at its seed" if done == 0 else f"{done} slice{'s' * (done > 1)} from its seed"
        said = (
            f"{where}: stopped after slice {self.last}, {gone} (slice {self.seed}); slice "
            f"{self.last + self.step} broke a rule ({self.reason}){rule_hint(self.reason)}"
        )
        if self.filled:
            said += f"; slices {self.filled[0]} to {self.filled[1]} were interpolated"
        return said


def warn_early_stops(stops: list[Stop]) -> None:
    """One :class:`~tilesam.errors.TileSAMWarning` for the walks that stopped within two
    slices of their seed: the labels are written, but hold little more than the seed.

    >>> import warnings
    >>> jump = Stop(2, 1, 7, "jump: overlap 0.10 with the previous slice < 0.3", seed=7)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_early_stops([jump])
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    Propagation stopped within two slices of the seed: object 2, towards higher slices: ...
    """
    early = [stop for stop in stops if stop.early]
    if early:
        lines = "\n".join(stop.describe() for stop in early)
        warnings.warn(
            "Propagation stopped within two slices of the seed: "
            f"{lines}\nThe labels hold little more than the annotated slice(s). Check the "
            "mask on the seed slice (a box around the object often gives a better one than "
            "a click), annotate the object on a slice further on (the walks then fill the "
            "slices between, interpolated where they stop), or change the rule named above.",
            TileSAMWarning,
            stacklevel=3,
        )
