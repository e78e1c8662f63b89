"""How long work reports and stops: one object for a progress bar, a callback and a cancel flag.

Embedding (in this process or on dask workers) and propagation take minutes; the command
line shows a progress bar, the napari plugin a progress bar of its own fed by a callback,
and a user may stop either. :class:`Progress` gives every loop the same three things.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

#: ``callback(done, total)``, called after each step
ProgressCallback = Callable[[int, int], Any]


class CancelFlag(Protocol):
    """Anything with ``is_set()``, e.g. a ``threading.Event``."""

    def is_set(self) -> bool: ...


class Progress:
    """Reports `total` steps of work as they are done, and tells whether to stop.

    Parameters
    ----------
    total : int
        Steps of the whole work.
    bar : bool
        Show a progress bar (tqdm: on a terminal, with the time left).
    desc, unit : str
        The bar's label and unit.
    callback : callable, optional
        ``callback(done, total)`` after each step, e.g. a GUI's progress bar.
    cancel : CancelFlag, optional
        Checked between steps: once set, :attr:`cancelled` is True and the loop stops.

    Examples
    --------
    >>> seen = []
    >>> with Progress(3, bar=False, callback=lambda done, total: seen.append(done)) as p:
    ...     for _ in range(3):
    ...         p.advance()
    >>> seen
    [1, 2, 3]
    """

    def __init__(
        self,
        total: int,
        *,
        bar: bool = False,
        desc: str = "",
        unit: str = "tile",
        callback: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
    ) -> None:
        from tqdm.auto import tqdm

        self.total, self.done = int(total), 0
        self.callback, self.cancel = callback, cancel
        self._bar = tqdm(total=self.total, desc=desc, unit=unit, disable=not bar)

    @property
    def cancelled(self) -> bool:
        """Whether the caller asked to stop."""
        return self.cancel is not None and bool(self.cancel.is_set())

    def advance(self, steps: int = 1) -> None:
        """Count `steps` more as done: update the bar, call the callback."""
        self.done += steps
        self._bar.update(steps)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
