"""Which stores are open: a store that a live process has open is never replaced.

Every open :class:`~tilesam.cache.store.EmbeddingStore` holds a shared ``flock`` on its
file ``claims/in-use`` (one descriptor per store per process, however many objects open
it); replacing a store (``overwrite``) needs that lock exclusively, so it fails while
another process has the store open: a ``tilesam embed --overwrite`` never deletes a
cache under a running session, embedder or worker, and two creators that both replace
one cache end up sharing one. The kernel drops the locks of a process that dies.

Where files cannot be locked (Windows, some network file systems) nothing is held and
every store counts as unused, as before this module.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from tilesam.cache.store_layout import CLAIMS

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FILE = "in-use"

_lock = threading.Lock()
_held: dict[tuple[int, int], list[int]] = {}  # (dev, ino) of the file: [fd, users]


def use(owner: object, store: Path, *, create: bool) -> Callable[[], object]:
    """Hold `store` open for as long as `owner` lives (`create`: make the file if missing,
    for a store open for writing); the function returned lets go earlier (once)."""
    return weakref.finalize(owner, release, hold(store, create=create))


def hold(store: Path, *, create: bool) -> tuple[int, int] | None:
    """Hold `store` open until :func:`release` (e.g. a store being built, before it is in
    place and has an owner)."""
    return _acquire(store / CLAIMS / FILE, create)


def unused(store: Path) -> bool:
    """Whether no other process has `store` open (True where that cannot be told). Checked
    under the folder lock of :mod:`tilesam.cache.creation`, just before a replacement."""
    file = store / CLAIMS / FILE
    if fcntl is None or not file.is_file():
        return True
    with _lock:
        try:
            stat = file.stat()
        except OSError:
            return True
        mine = _held.get((stat.st_dev, stat.st_ino))
        fd = mine[0] if mine else None
        own = fd is not None
        try:
            if fd is None:
                fd = os.open(file, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # converts our shared one
            except BlockingIOError:
                return False
            except OSError:
                return True
            finally:
                if own:  # keep holding it shared (the conversion may have dropped it)
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                else:
                    os.close(fd)
        except OSError:
            return True
        return True


def _acquire(file: Path, create: bool) -> tuple[int, int] | None:
    if fcntl is None:
        return None
    try:
        if create:
            file.parent.mkdir(exist_ok=True)
        fd = os.open(file, (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY, 0o644)
    except OSError:  # none (a read-only store of an older TileSAM), or not writable
        return None
    stat = os.fstat(fd)
    key = (stat.st_dev, stat.st_ino)
    with _lock:
        if key in _held:
            os.close(fd)
            _held[key][1] += 1
            return key
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits out a replacement in progress (ms)
        except OSError:
            os.close(fd)
            return None
        _held[key] = [fd, 1]
    return key


def release(key: tuple[int, int] | None) -> None:
    """Let go of what :func:`hold` took."""
    if key is None:
        return
    with _lock:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            os.close(entry[0])
