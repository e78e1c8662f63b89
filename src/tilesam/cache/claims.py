"""Per-tile claims: embedders of one store (processes, threads, machines on a shared
disk) share the work instead of each computing every tile.

A claim is an exclusive ``flock`` on the file ``claims/<z>.<ty>.<tx>`` of the store, taken
without waiting: whoever holds it computes the tile; the others skip it and come back to
it at the end (:func:`tilesam.cache.embed.embed_tiles`), by which time it is done, or free
again because its owner stopped. The kernel drops the lock of a process that dies, however
it dies (``kill -9`` included), so a dead embedder's claims are taken over at once and
never need cleaning. The file holds the owner's host and pid, for messages only.

A claim's file is removed by its owner once the tile is done (while still holding it);
someone who opened the file just before then locks a removed file, which
:meth:`TileClaims.claim` notices (the path no longer names that file) and retries, and a
claimer always checks afterwards whether the tile is done.

Where ``flock`` is not available (Windows, or a file system that refuses locks) every
claim succeeds: embedders then work as before claims existed, each computing what it
finds missing, which wastes time but is correct (tiles are written atomically).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

from tilesam.cache.tiling import TileIndex

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_HOST = socket.gethostname()


class TileClaims:
    """The claims one embedder holds on the tiles of one store (in its folder `folder`);
    each embedder, each thread of a process too, makes its own.

    Examples
    --------
    >>> import tempfile
    >>> mine = TileClaims(Path(tempfile.mkdtemp()))
    >>> theirs = TileClaims(mine.folder)  # another embedder (e.g. another process)
    >>> mine.claim((0, 1, 2)), theirs.claim((0, 1, 2))
    (True, False)
    >>> mine.release((0, 1, 2), finished=False)
    >>> theirs.claim((0, 1, 2))
    True
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._held: dict[TileIndex, int] = {}
        self._lock = threading.Lock()
        self._unsupported = fcntl is None

    def claim(self, tile: TileIndex) -> bool:
        """Take `tile` if no other embedder holds it; True when this object now holds it
        (also when it already did)."""
        tile = tuple(int(i) for i in tile)  # type: ignore[assignment]
        with self._lock:
            if tile in self._held:
                return True
        if self._unsupported:
            return True
        path = self._file(tile)
        for _ in range(8):  # a retry per claim file removed under us: rare
            try:
                self.folder.mkdir(exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:  # a read-only store, a full disk: no sharing, but work
                return self._give_up(err)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as err:  # the file system does not lock
                os.close(fd)
                return self._give_up(err)
            if not _same_file(fd, path):  # removed by its finished owner meanwhile
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{_HOST} {os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the owner's name is for messages only
            with self._lock:
                self._held[tile] = fd
            return True
        return False

    def release(self, tile: TileIndex, *, finished: bool) -> None:
        """Give `tile` back; `finished`: it is done (its claim file is removed)."""
        tile = tuple(int(i) for i in tile)  # type: ignore[assignment]
        with self._lock:
            fd = self._held.pop(tile, None)
        if fd is None:
            return
        try:
            if finished:
                self._file(tile).unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing drops the lock

    def release_all(self) -> None:
        """Give back every claim still held (e.g. after a cancel or an error)."""
        with self._lock:
            held = list(self._held)
        for tile in held:
            self.release(tile, finished=False)

    def held(self) -> list[TileIndex]:
        """The tiles this object holds."""
        with self._lock:
            return sorted(self._held)

    def owner(self, tile: TileIndex) -> str:
        """Who holds `tile`, as its claim file says (``"host pid"``), or ``""``."""
        try:
            return self._file(tile).read_text().strip()
        except OSError:
            return ""

    def _file(self, tile: TileIndex) -> Path:
        z, ty, tx = tile
        return self.folder / f"{z}.{ty}.{tx}"

    def _give_up(self, err: OSError) -> bool:
        if not self._unsupported:
            logger.warning(
                "Tiles of %s cannot be claimed (%s): embedders of this cache do not share "
                "the work (each computes what it finds missing).",
                self.folder.parent,
                err.strerror or err,
            )
        self._unsupported = True
        return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
