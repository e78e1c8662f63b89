"""Committed objects written into label arrays as windows, all or nothing.

A committed object is written as a *window* (the object's bounding box on one slice), so
even a 50 000 x 50 000 slide only ever touches the chunks an object covers. The arrays are
in memory, or labels stores on disk (:mod:`tilesam_napari._labels_store` says which, and
opens them).

Every write to a store (a commit, an undo) is all or nothing: before the first chunk is
written, what the write replaces and the ``next_id`` before it are saved in a journal file
in the store (atomically); the journal goes once the data and ``next_id`` are written. A
journal found on opening is a write that never finished (napari killed, a full disk): it
is rolled back, so the store holds whole objects and a ``next_id`` above all of them.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.io.atomic import atomic_output

CHUNK = 1024  # a store's chunk edge in y and x; one slice per chunk in z
#: The store's attribute holding the id the next object gets.
NEXT_ID = "next_id"
#: The journal of a write in progress, inside the store's folder.
JOURNAL = "tilesam-unfinished-write.npz"
#: Writes and roll-backs of this process, one at a time (several viewers may share a store).
WRITE_LOCK = threading.RLock()


def is_on_disk(array: Any) -> bool:
    """Whether `array` is a zarr array (written through, never held whole in memory)."""
    return not isinstance(array, np.ndarray)


# -- windows and edits ----------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """A 2D window of one slice: ``z`` (None for a 2D array), offset ``(y0, x0)`` and mask."""

    z: int | None
    offset: tuple[int, int]
    mask: np.ndarray

    @property
    def region(self) -> tuple:
        """The index into the label array that the window covers."""
        (y0, x0), (h, w) = self.offset, self.mask.shape
        yx = (slice(y0, y0 + h), slice(x0, x0 + w))
        return yx if self.z is None else (self.z, *yx)

    @property
    def empty(self) -> bool:
        return not self.mask.any()


def bounding_window(z: int | None, mask: np.ndarray) -> Window:
    """The tight window around the True pixels of a 2D `mask`."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return Window(z, (0, 0), np.zeros((0, 0), bool))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Window(z, (int(y0), int(x0)), mask[y0:y1, x0:x1])


@dataclass(frozen=True)
class Edit:
    """What a write replaced (`before`) with what (`after`), so that it can be undone."""

    region: tuple
    before: np.ndarray
    after: np.ndarray


def commit(
    array: Any, windows: Sequence[Window], *, overwrite: bool = False, into: int | None = None
) -> tuple[int, list]:
    """Write the object of `windows` (one per slice) under the next free id, or `into` an
    object already there (its id), all or nothing; without `overwrite` only over background.

    Returns the id and the `Edit` list that undoes it (empty: nothing changed, no id used).
    """
    with WRITE_LOCK:
        free = next_id(array)
        new_id = free if into is None else into
        edits = [e for w in windows if (e := _plan(array, w, new_id, overwrite)) is not None]
        used = is_on_disk(array) and new_id >= free  # keep the next id above every object
        _apply(array, edits, {NEXT_ID: new_id + 1} if used else None)
    return new_id, edits


def fill(array: Any, labels: np.ndarray) -> list[Edit]:
    """Write the objects of `labels` (a volume of `array`'s shape; 0 leaves a pixel as it
    is), keeping their ids, over the background of `array` only, all or nothing.

    Returns the `Edit` list that undoes it (empty: nothing changed). No id is used up."""
    with WRITE_LOCK:
        edits = []
        for z in np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1)):
            window = bounding_window(int(z), labels[z] > 0)
            if (edit := _plan(array, window, labels[window.region], False)) is not None:
                edits.append(edit)
        _apply(array, edits)
    return edits


def _apply(array: Any, edits: Sequence[Edit], attrs: Mapping[str, Any] | None = None) -> None:
    """Make the planned `edits` (then `attrs`), all or nothing; nothing if there are none."""
    if edits:
        write(array, [(e.region, e.after) for e in edits], [e.before for e in edits], attrs)


def revert(array: Any, edits: Sequence[Edit]) -> None:
    """Undo `edits` (a commit's), all or nothing."""
    write(array, [(e.region, e.before) for e in reversed(edits)])


def next_id(array: Any) -> int:
    """The id the next object gets: above every id ever given (on disk, the store's
    ``next_id``, read from the disk: another viewer may have committed since)."""
    if not is_on_disk(array):
        return max_label(array) + 1
    return max(int(_attributes(array).get(NEXT_ID, 1)), 1)


def _plan(array: Any, window: Window, value: Any, overwrite: bool) -> Edit | None:
    """Writing `value` (an id, or one per pixel of the window) at `window`'s pixels."""
    if window.empty:
        return None
    region = window.region
    before = np.array(array[region])  # a copy: a numpy region is a view
    target = window.mask if overwrite else window.mask & (before == 0)
    if not target.any():
        return None
    return Edit(region, before, np.where(target, value, before).astype(before.dtype, copy=False))


def max_label(array: Any) -> int:
    """The largest label in `array`, reading zarr arrays chunk by chunk."""
    if isinstance(array, np.ndarray):
        return int(array.max(initial=0))
    return max((int(np.max(block, initial=0)) for block in _blocks(array)), default=0)


def contains(array: Any, label: int) -> bool:
    """Whether `array` has a pixel of `label`, reading zarr arrays chunk by chunk until one."""
    if isinstance(array, np.ndarray):
        return bool((array == label).any())
    return any(bool((block == label).any()) for block in _blocks(array))


def _blocks(array: Any) -> Iterator[np.ndarray]:
    """The zarr `array` a row of chunks of one slice at a time."""
    for z in range(array.shape[0] if array.ndim == 3 else 1):
        for y in range(0, array.shape[-2], CHUNK):
            region = (slice(y, y + CHUNK), slice(None))
            yield array[(z, *region)] if array.ndim == 3 else array[region]


# -- all-or-nothing writes to a store -------------------------------------------------------
def write(
    array: Any,
    changes: Sequence[tuple[tuple, np.ndarray]],
    current: Sequence[np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write each ``(region, values)`` of `changes`, then `attrs`, all or nothing.

    On disk, `current` (what the regions hold now; read if not given) and ``next_id`` go
    to the journal first; a failure rolls the write back, and a kill leaves the journal
    for `recover`.
    """
    if not is_on_disk(array):
        for region, values in changes:
            array[region] = values
        return
    with WRITE_LOCK:
        recover(array)  # a write that failed to roll back: never write over its journal
        regions = [region for region, _ in changes]
        if current is None:
            current = [np.array(array[region]) for region in regions]
        journal = store_path(array) / JOURNAL
        _save_journal(journal, regions, current, int(_attributes(array).get(NEXT_ID, 1)))
        try:
            for region, values in changes:
                array[region] = values
            if attrs:
                array.attrs.update(dict(attrs))
        except BaseException:
            with contextlib.suppress(Exception):
                recover(array)  # else the journal stays, for the next opening
            raise
        journal.unlink()


def recover(array: Any) -> bool:
    """Roll back a write to the store `array` that never finished; True if there was one."""
    journal = store_path(array) / JOURNAL
    with WRITE_LOCK:
        if not journal.is_file():
            return False
        with np.load(journal, allow_pickle=False) as saved:
            meta = json.loads(saved["meta"].tobytes())
            for i, region in reversed(list(enumerate(meta["regions"]))):
                array[_region(region)] = saved[f"r{i}"]
        array.attrs.update({NEXT_ID: int(meta[NEXT_ID])})
        journal.unlink()
    return True


def _save_journal(path: Path, regions: list[tuple], current: Sequence[np.ndarray], nid: int):
    meta = {NEXT_ID: nid, "regions": [_plain(r) for r in regions]}
    blocks = {f"r{i}": np.asarray(block) for i, block in enumerate(current)}
    with atomic_output(path) as partial, open(partial, "wb") as f:
        np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **blocks)


def _plain(region: tuple) -> list:
    return [[s.start, s.stop] if isinstance(s, slice) else int(s) for s in region]


def _region(plain: list) -> tuple:
    return tuple(slice(*s) if isinstance(s, list) else int(s) for s in plain)


def store_path(array: Any) -> Path:
    """The folder of the zarr `array`."""
    return Path(array.store.root) / array.path


def _attributes(array: Any) -> dict[str, Any]:
    """The store's attributes as on disk now (an array's own are read when it opened)."""
    try:
        meta = json.loads((store_path(array) / "zarr.json").read_text())
        return dict(meta.get("attributes", {}))
    except (OSError, ValueError):
        return dict(array.attrs)
