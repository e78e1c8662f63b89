"""`PrepareOnReuse`: what a decoder makes of features, prepared once they have come often.

A prompt decoder can prepare the image side of features (the first block's projections that
depend on the image alone) so that each later prompt on them skips that work. Preparing pays
only after some prompts: features decoded once or twice (a slice in propagation, walked again;
a tile that a stitched object just touches) should not pay for it, features prompted again and
again (a tile clicked to refine one object, then the next) should. Both decoders (torch's in
:class:`tilesam.SamModel`, the NumPy one in
:class:`~tilesam.decode.numpy_predictor.NumpyPredictor`) keep one `PrepareOnReuse`, which
remembers the last few features seen, by identity, and how often each came.

One predictor may decode from two threads at once (the QGIS dock answers a click in the GUI
thread while a task propagates), so the map is locked; the work itself runs outside the lock.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["PrepareOnReuse"]

T = TypeVar("T")


@dataclass
class _Seen(Generic[T]):
    ref: weakref.ref
    value: T | None  # what was made (None: not kept), then what was prepared
    uses: int
    prepared: bool = False


class PrepareOnReuse(Generic[T]):
    """The last `size` features seen, by identity, with what was made of them; prepared at
    their `at_use`-th decode.

    Examples
    --------
    >>> import numpy as np
    >>> sides = PrepareOnReuse(size=2, at_use=3)
    >>> features = np.zeros((4, 2, 2), np.float32)
    >>> plain, prepared = (lambda: "plain"), (lambda side: side + " + prepared")
    >>> [sides.get(features, plain, prepared) for _ in range(4)]
    ['plain', 'plain', 'plain + prepared', 'plain + prepared']
    >>> sides.get(features, plain, prepared, key="a window")  # another image side of them
    'plain'
    >>> sides.kept(features)
    'plain + prepared'
    """

    def __init__(self, *, size: int = 8, at_use: int = 2, keep_made: bool = True) -> None:
        if at_use < 2:
            raise ValueError(f"at_use must be 2 or more, not {at_use}")
        self.size = size
        self.at_use = at_use
        # Without `keep_made`, what `make` gives is made again until prepared, not kept: for
        # values that hold the features themselves (torch's tensor on their memory), which
        # would keep features alive here after their owner dropped them.
        self.keep_made = keep_made
        self._seen: OrderedDict[tuple[int, Hashable], _Seen[T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        features: Any,
        make: Callable[[], T],
        prepare: Callable[[T], T],
        *,
        key: Hashable = None,
    ) -> T:
        """What to decode `features` (with `key`: a window of them) from: ``make()`` on their
        first decode, the same again until the `at_use`-th, then ``prepare`` of it, kept."""
        ident = (id(features), key)
        with self._lock:
            seen = self._seen.get(ident)
            if seen is not None and seen.ref() is not features:  # an id reused by new features
                seen = None
            if seen is not None:
                self._seen.move_to_end(ident)
                seen.uses += 1
                uses, kept = seen.uses, seen.value
                if seen.prepared or (uses != self.at_use and self.keep_made):
                    return kept
        if seen is None:
            value = make()
            self._remember(ident, features, value if self.keep_made else None)
            return value
        if uses != self.at_use:  # not kept, or being prepared by another thread
            return make() if kept is None else kept
        value = prepare(kept if self.keep_made else make())
        with self._lock:
            seen.value, seen.prepared = value, True
        return value

    def kept(self, features: Any, *, key: Hashable = None) -> T | None:
        """What is kept for `features` (with `key`), None if nothing is (or, without
        `keep_made`, nothing prepared yet)."""
        with self._lock:
            seen = self._seen.get((id(features), key))
            return None if seen is None or seen.ref() is not features else seen.value

    def _remember(self, ident: tuple[int, Hashable], features: Any, value: T) -> None:
        try:
            ref = weakref.ref(features)
        except TypeError:  # features that take no weak reference are not kept
            return
        with self._lock:
            self._seen[ident] = _Seen(ref, value, 1)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
