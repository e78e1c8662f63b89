"""Errors and warnings as napari notifications: a user of the viewer reads a message, never
a traceback (or a warning lost in a worker thread's stderr).

Its own module, below everything that reports (the controller's key bindings, the workers,
the dock widget), so that none of them imports another to show an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from napari.utils.notifications import show_error, show_info, show_warning

from tilesam.errors import Cancelled, TileSAMError

T = TypeVar("T")


def report(exc: BaseException) -> None:
    """Show an error in napari's notification area (user errors without a type name)."""
    if isinstance(exc, Cancelled):
        show_info(f"TileSAM: {exc or 'cancelled'}")
    elif isinstance(exc, TileSAMError):
        show_error(str(exc))
    else:
        show_error(f"TileSAM: unexpected {type(exc).__name__}: {exc}")


def warn(message: str) -> None:
    """Show a warning (e.g. a `tilesam.errors.TileSAMWarning` caught in a worker) in
    napari's notification area."""
    show_warning(message if message.startswith("TileSAM") else f"TileSAM: {message}")


def walked(stops: Sequence[Any], warnings: Sequence[str] = (), note: str = "") -> None:
    """Say what a propagation propagated (its `note`, if any), where and why each walk
    stopped and what would take it further (`tilesam.volumes.stops.Stop.describe`), then
    the propagation's warnings."""
    if note:
        show_info(note)
    if stops:
        show_info("TileSAM propagation: " + "; ".join(s.describe() for s in stops))
    for text in warnings:
        warn(text)


def guarded(fn: Callable[[], T]) -> T | None:
    """Call `fn`; any error becomes a notification and the result None."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the user sees a message, never a traceback
        report(exc)
        return None
