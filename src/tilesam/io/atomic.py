"""`atomic_output`: every file or folder TileSAM writes appears complete, or not at all.

A writer writes to a temporary sibling of the target: in the same folder, so that the
final rename stays on one file system and is atomic; with the same ending, because writers
(SimpleITK, imageio, zarr) choose the format by it. Only a complete result replaces the
target, so a failure, a full disk or Ctrl-C leaves the previous file as it was and no
partial file behind. A write that fails on the disk (no space, a read-only file system, a
folder removed meanwhile) ends in one :class:`~tilesam.errors.TileSAMError` that names the
file, the reason and the way out.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> target = Path(tempfile.mkdtemp()) / "note.txt"
>>> with atomic_output(target) as partial:
...     _ = partial.write_text("done")
>>> target.read_text(), [p.name for p in target.parent.iterdir()]
('done', ['note.txt'])
>>> import errno
>>> with atomic_output(target) as partial:  # a failed write keeps the previous file
...     _ = partial.write_text("half")
...     raise OSError(errno.ENOSPC, "No space left on device")  # doctest: +ELLIPSIS
Traceback (most recent call last):
tilesam.errors.TileSAMError: Could not write '...note.txt': No space left on device. Free ...
>>> target.read_text(), [p.name for p in target.parent.iterdir()]
('done', ['note.txt'])
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tilesam.errors import TileSAMError


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write a file (or a folder, e.g. OME-Zarr) that becomes `path`.

    On leaving the block without an error the result replaces `path`; on an error (or an
    interrupt) it is removed and `path` is left untouched. An ``OSError`` of the disk (a
    writer's own, or SimpleITK's ``RuntimeError`` that hides one) becomes a
    :class:`~tilesam.errors.TileSAMError` (:func:`write_failed`).
    """
    path = Path(path)
    # Hidden, so that a file browser or a glob of the folder does not show it meanwhile.
    partial = path.with_name(f".{uuid.uuid4().hex[:8]}.partial-{path.name}")
    try:
        yield partial
        _put_in_place(partial, path)
    except OSError as err:
        # A writer that only notices its file is bad (EIO) may be hiding a full disk.
        disk = _disk_problem(path.parent) if err.errno in (errno.EIO, None) else None
        raise write_failed(path, OSError(*disk) if disk else err) from err
    except RuntimeError as err:
        # SimpleITK reports a file it cannot open as a RuntimeError: say why if the disk is
        # the cause, else let the error be what it is.
        reason = _disk_problem(path.parent)
        if reason is None:
            raise
        raise write_failed(path, OSError(reason[0], reason[1])) from err
    finally:
        _remove(partial)


def make_folder(path: str | os.PathLike[str]) -> Path:
    """Create the folder `path` (and its parents) for output; one clear error if it cannot be.

    >>> import tempfile
    >>> make_folder(Path(tempfile.mkdtemp()) / "run" / "1").is_dir()
    True
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise TileSAMError(f"'{folder}' is a file, not a folder: choose another folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failed(folder, err) from err
    return folder


def write_failed(path: str | os.PathLike[str], err: OSError) -> TileSAMError:
    """The error for a file that could not be written: which, why, and what to do."""
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        fix = "Free space on that disk, or write to another one."
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "Choose a folder you can write to."
    elif err.errno == errno.EISDIR:
        fix = "Give a file name, not a folder."
    else:
        fix = "Choose a folder that exists and that you can write, on a disk with free space."
    return TileSAMError(f"Could not write '{path}': {reason}. {fix}")


def _disk_problem(folder: Path) -> tuple[int, str] | None:
    """``(errno, reason)`` when `folder`'s file system is read-only or full, else None."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return errno.ENOENT, "the folder does not exist"
    if stats.f_flag & os.ST_RDONLY:
        return errno.EROFS, "Read-only file system"
    if stats.f_bavail * stats.f_frsize < 1 << 20:
        return errno.ENOSPC, "No space left on device"
    return None


def _put_in_place(partial: Path, path: Path) -> None:
    if partial.is_file() and partial.stat().st_size == 0:
        # Some writers (SimpleITK on a full disk) leave an empty file and report success:
        # an empty result never replaces anything.
        reason = _disk_problem(path.parent) or (errno.EIO, "the writer wrote nothing")
        raise OSError(*reason)
    if not (partial.is_dir() or path.is_dir()):
        os.replace(partial, path)  # atomic: a reader sees the old file or the new one
        return
    if not os.path.lexists(path):
        os.rename(partial, path)
        return
    # No rename replaces a non-empty folder: set the old one aside, then move the new one
    # in (putting the old one back if that fails), and only then delete the old one.
    old = path.with_name(f".{uuid.uuid4().hex[:8]}.replaced-{path.name}")
    os.rename(path, old)
    try:
        os.rename(partial, path)
    except BaseException:
        os.rename(old, path)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    """Best-effort removal of a partial result (a read-only disk refuses even that)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        try:
            path.unlink()
        except OSError:
            pass
