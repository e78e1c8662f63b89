"""Errors as napari notifications: a user of the viewer reads a message, never a traceback.

Its own module, below everything that reports (the controller's key bindings, the workers,
the dock widget), so that none of them imports another to show an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from napari.utils.notifications import show_error, show_info

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


def guarded(fn: Callable[[], T]) -> T | None:
    """Call `fn`; any error becomes a notification and the result None."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the user sees a message, never a traceback
        report(exc)
        return None
