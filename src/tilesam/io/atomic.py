"""`atomic_output`: every file or folder TileSAM writes appears complete, or not at all.

A writer writes to a temporary sibling of the target: in the same folder, so that the
final rename stays on one file system and is atomic; with the same ending, because writers
(SimpleITK, imageio, zarr) choose the format by it. Only a complete result replaces the
target, so a failure, a full disk or Ctrl-C leaves the previous file as it was and no
partial file behind.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> target = Path(tempfile.mkdtemp()) / "note.txt"
>>> with atomic_output(target) as partial:
...     _ = partial.write_text("done")
>>> target.read_text(), [p.name for p in target.parent.iterdir()]
('done', ['note.txt'])
>>> with atomic_output(target) as partial:  # a failed write keeps the previous file
...     _ = partial.write_text("half")
...     raise OSError("disk full")
Traceback (most recent call last):
OSError: disk full
>>> target.read_text(), [p.name for p in target.parent.iterdir()]
('done', ['note.txt'])
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write a file (or a folder, e.g. OME-Zarr) that becomes `path`.

    On leaving the block without an error the result replaces `path`; on an error (or an
    interrupt) it is removed and `path` is left untouched.
    """
    path = Path(path)
    # Hidden, so that a file browser or a glob of the folder does not show it meanwhile.
    partial = path.with_name(f".{uuid.uuid4().hex[:8]}.partial-{path.name}")
    try:
        yield partial
        _put_in_place(partial, path)
    finally:
        _remove(partial)


def _put_in_place(partial: Path, path: Path) -> None:
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
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
