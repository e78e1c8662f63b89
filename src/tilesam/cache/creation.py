"""Creating an embedding store atomically: built in a hidden sibling folder, then renamed
into place.

A process killed while creating leaves at most that sibling (removed by the next creation
in the folder once its owner is dead), never a half-made store that blocks the next run.
Creators of stores in one folder take the folder's lock (``flock`` on the folder) for the
few milliseconds of the rename, and replace only what they saw before they began: two
processes creating the same store both succeed, the second one opening the first one's
store, and neither deletes the other's; a store open in a live process is never replaced
(:mod:`tilesam.cache.in_use`).

What may be at a store's path:

- ``"missing"``, ``"empty"`` (an empty folder), ``"unfinished"`` (what a TileSAM before
  format 2 left when killed while creating, see
  :func:`~tilesam.cache.store_layout.is_unfinished_creation`): nothing to keep, replaced;
- ``("store", ...)``: a TileSAM store, replaced only with ``overwrite``;
- ``"other"``: anything else, never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tilesam.cache import in_use
from tilesam.cache.store_layout import ARRAYS, is_unfinished_creation, read_header

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_HOST = socket.gethostname()
_TAG = ".tilesam-"


def state(path: Path) -> Any:
    """What is at `path` now: ``"missing"``, ``"empty"``, ``"unfinished"``, ``"other"``, or
    ``("store", identity)`` where identity tells this store from one made in its place."""
    if not path.exists() and not path.is_symlink():
        return "missing"
    if not path.is_dir():
        return "other"
    try:
        if not any(path.iterdir()):
            return "empty"
    except OSError:
        return "other"
    if read_header(path) is not None or looks_like_store(path):
        try:
            meta = (path / "zarr.json").stat()
            return ("store", meta.st_ino, meta.st_dev)
        except OSError:
            return ("store", None)
    if is_unfinished_creation(path):
        return "unfinished"
    return "other"


def looks_like_store(path: Path) -> bool:
    """A store whose ``zarr.json`` is damaged: the folder holds a ``zarr.json`` and the
    arrays of a store (each with its own ``zarr.json``) and nothing else of the user's."""
    names = {"embeddings", "done", "tile_shape", "input_shape"}
    try:
        if not (path / "zarr.json").is_file():
            return False
        # Hidden names: the weights of a session killed while storing them, and the like.
        entries = {p.name for p in path.iterdir() if not p.name.startswith(".")}
    except OSError:
        return False
    allowed = {"zarr.json", "decoder", "claims", *ARRAYS}
    return (
        names <= entries
        and entries <= allowed
        and all((path / n / "zarr.json").is_file() for n in names)
    )


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A new hidden sibling folder name of `path` to build a store in; removed on leaving
    unless it was moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = sibling(path, "new")
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def place(tmp: Path, path: Path, seen: Any) -> str:
    """Move the store built in `tmp` to `path`, replacing what is there if it is still
    what the caller saw (`seen`, a :func:`state`), can be replaced and is not open in
    another process (:mod:`tilesam.cache.in_use`).

    Returns ``"placed"``; ``"theirs"`` when another process put a store there meanwhile;
    ``"in use"`` when the store to replace is open in another process (both leave `path`
    alone: the caller opens that store, or refuses). Raises ``FileExistsError`` for
    anything else there.
    """
    aside = None
    with _folder_lock(path.parent):
        now = state(path)
        if isinstance(now, tuple) and now != seen:
            return "theirs"  # made (or replaced) by another process since we looked
        if now == "other":
            raise FileExistsError(errno.EEXIST, "not a TileSAM embedding cache", str(path))
        if isinstance(now, tuple) and not in_use.unused(path):
            return "in use"
        if isinstance(now, tuple) or now == "unfinished":
            aside = sibling(path, "old")
            try:
                os.rename(path, aside)
            except FileNotFoundError:  # gone meanwhile (a creator without the lock)
                aside = None
        try:
            os.rename(tmp, path)  # onto nothing or onto an empty folder: atomic
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                if aside is not None:  # put back what we moved
                    with contextlib.suppress(OSError):
                        os.rename(aside, path)
                raise
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
            return "theirs"  # a creator without the lock (another file system) was first
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return "placed"


def sibling(path: Path, kind: str) -> Path:
    """A hidden sibling of `path` named after this process (so that a dead one's are found)."""
    return path.with_name(f".{path.name}{_TAG}{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}@{_HOST}")


def remove_stale(path: Path) -> None:
    """Remove the siblings of `path` left by processes of this machine that have died."""
    prefix = f".{path.name}{_TAG}"
    try:
        entries = [p for p in path.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        rest, _, host = entry.name[len(prefix) :].rpartition("@")
        parts = rest.split("-")
        if host != _HOST or len(parts) != 3 or not parts[1].isdigit():
            continue
        if not _alive(int(parts[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on `folder` (where it can be had)."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system: the renames alone stay atomic
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)
