"""Label arrays behind the result layers: dense in memory, or chunked zarr on disk.

A committed object is written as a *window* (the object's bounding box on one slice), so
even a 50 000 x 50 000 slide only ever touches the chunks an object covers. Above
`LARGE_VOXELS` the committed labels live in a zarr array on disk (a *labels store*) and
every write lands there at once: a crash loses nothing.

A labels store belongs to one image. It carries the image's signature (shape, dtype, axes
and content fingerprint: the ``image`` part of the session's cache signature) and is never
reused for another image, nor replaced: opening it for another image is refused. A store
without a signature (made by an earlier TileSAM) is adopted as it is.

Every write to a store (a commit, an undo) is all or nothing: before the first chunk is
written, what the write replaces and the ``next_id`` before it are saved in a journal file
in the store (atomically); the journal goes once the data and ``next_id`` are written. A
journal found on opening is a write that never finished (napari killed, a full disk): it
is rolled back, so the store holds whole objects and a ``next_id`` above all of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.cache.signature import normalise_signature, signature_diff
from tilesam.errors import TileSAMError
from tilesam.io.atomic import atomic_output

#: Volumes with more voxels than this get an on-disk zarr array for committed labels.
LARGE_VOXELS = 4096 * 4096
_CHUNK = 1024  # chunk edge in y and x; one slice per chunk in z

#: The store's attributes: the image it belongs to, and the id the next object gets.
SIGNATURE_KEY, NEXT_ID = "tilesam_labels", "next_id"
#: The journal of a write in progress, inside the store's folder.
JOURNAL = "tilesam-unfinished-write.npz"
# Writes and roll-backs of this process, one at a time (several viewers may share a store).
_LOCK = threading.RLock()


# -- where the committed labels of an image live ------------------------------------------
def needs_disk(shape: tuple[int, ...]) -> bool:
    """Whether committed labels of `shape` live on disk (above `LARGE_VOXELS`)."""
    return int(np.prod(shape)) > LARGE_VOXELS


def labels_path(shape: tuple[int, ...], cache: str | os.PathLike[str] | None) -> Path | None:
    """The labels store beside the embedding `cache` (``<cache>.labels.zarr``) for an image
    of `shape`; None when its labels stay in memory, or without a cache (then they go to a
    temporary folder, see `Committed.data`)."""
    if not cache or not needs_disk(shape):
        return None
    return Path(cache).expanduser().with_suffix(".labels.zarr")


@dataclass
class Committed:
    """The committed labels of one image: where they live, and the image they belong to.

    Made by `prepare` (no viewer needed: it runs in a worker thread); `data()` gives the
    array for the ``committed_objects`` layer.
    """

    shape: tuple[int, ...]
    image: dict[str, Any]  # the image's signature, normalised
    path: Path | None = None  # the store beside the cache, opened: `array`
    array: Any = None
    notes: list[str] = field(default_factory=list)  # what opening it repaired or adopted

    @property
    def key(self) -> dict[str, Any]:
        """What a ``committed_objects`` layer made for these labels is tagged with."""
        return {"image": self.image, "store": None if self.path is None else str(self.path)}

    def data(self) -> Any:
        """The labels array: the opened store; else in memory (new zeros), or, for a large
        image without a cache, a store in a temporary folder (made once)."""
        if self.array is not None:
            return self.array
        if not needs_disk(self.shape):
            return np.zeros(self.shape, np.uint32)
        folder = Path(tempfile.mkdtemp(prefix="tilesam-labels-"))
        self.array, _ = open_committed(folder / "committed.zarr", self.shape, self.image)
        return self.array


def prepare(
    shape: tuple[int, ...], image: Mapping[str, Any], cache: str | os.PathLike[str] | None
) -> Committed:
    """The committed labels of an image of spatial `shape` with signature `image` (the
    session's ``signature["image"]``), its store beside `cache` opened or created.

    Raises
    ------
    TileSAMError
        If the store beside the cache belongs to another image, or is no labels store:
        nothing is changed on disk then.
    """
    committed = Committed(tuple(shape), normalise_signature(image), labels_path(shape, cache))
    if committed.path is not None:
        committed.array, committed.notes = open_committed(committed.path, shape, committed.image)
    return committed


def open_committed(
    path: str | os.PathLike[str], shape: tuple[int, ...], image: Mapping[str, Any]
) -> tuple[Any, list[str]]:
    """The labels store at `path` for the image of spatial `shape` and signature `image`:
    created if there is none, else reopened with its committed objects.

    Returns the zarr array and notes for the user: an unfinished write rolled back, a store
    of an earlier TileSAM (no signature) adopted. A store of another image, or anything
    else at `path`, is refused (`TileSAMError`) and left as it is.
    """
    path, shape = Path(path), tuple(shape)
    image = normalise_signature(image)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        _create(path, shape, image)
    array = _open_store(path)
    stored = array.attrs.get(SIGNATURE_KEY)
    if stored is not None:  # an edited, unreadable signature fits no image
        signed = stored.get("image", {}) if isinstance(stored, Mapping) else {}
        _check_same_image(path, signed, image, tuple(array.shape), shape)
    elif tuple(array.shape) != shape:
        raise _other_image(path, f"{_size(array.shape)} pixels there, {_size(shape)} here")
    notes = []
    with _LOCK:
        if recover(array):
            notes.append(
                f"TileSAM: a commit to '{path}' was cut short (napari stopped during it) and "
                "has been rolled back; every object committed before it is kept."
            )
        if stored is None:
            next_id = max(int(array.attrs.get(NEXT_ID, 1)), max_label(array) + 1)
            array.attrs.update({SIGNATURE_KEY: _signature(image), NEXT_ID: next_id})
            notes.append(
                f"TileSAM: '{path}' was made by an earlier TileSAM, without the image's "
                f"signature: its committed objects (ids below {next_id}) are kept and now "
                "belong to this image. If they were drawn on another image, set this one up "
                "with another cache path."
            )
    return array, notes


def _signature(image: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "image": image}


def _create(path: Path, shape: tuple[int, ...], image: dict[str, Any]) -> None:
    """A new, empty store at `path`, made in a temporary sibling and renamed into place, so
    that it appears whole with its signature; one made meanwhile by another viewer wins."""
    import zarr

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{uuid.uuid4().hex[:8]}.partial-{path.name}")
    chunks = (*(1,) * (len(shape) - 2), *(min(_CHUNK, n) for n in shape[-2:]))
    try:
        zarr.create_array(
            str(partial),
            shape=shape,
            chunks=chunks,
            dtype=np.uint32,
            fill_value=0,
            attributes={SIGNATURE_KEY: _signature(image), NEXT_ID: 1},
        )
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()  # empty (checked by the caller); fails if no longer empty
        try:
            os.rename(partial, path)  # never replaces a store: the folder is not empty
        except OSError:
            if not (path / "zarr.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _open_store(path: Path) -> Any:
    import zarr

    refused = TileSAMError(
        f"'{path}' is not a TileSAM labels store (committed objects are saved there, beside "
        f"the cache): it is left as it is, and this image was not set up. Choose another "
        f"cache path, or move '{path}' away."
    )
    if not (path / "zarr.json").is_file():
        raise refused
    try:
        node = zarr.open(str(path), mode="r+")
    except Exception as exc:  # noqa: BLE001 - any unreadable store is refused the same way
        raise refused from exc
    if not isinstance(node, zarr.Array) or node.ndim not in (2, 3) or node.dtype.kind not in "ui":
        raise refused
    return node


def _check_same_image(
    path: Path, stored: Any, image: dict[str, Any], stored_shape: tuple, shape: tuple
) -> None:
    diffs = signature_diff(stored if isinstance(stored, Mapping) else {}, image)
    if not diffs and stored_shape == shape:
        return
    what = []
    for name, there, here in diffs:
        if name == "shape":
            what.append(f"{_size(there)} pixels there, {_size(here)} here")
        elif name == "content":
            what.append("other pixels")
        else:
            what.append(f"{name} {there} there, {here} here")
    raise _other_image(path, "; ".join(what) or f"{_size(stored_shape)} labels")


def _other_image(path: Path, what: str) -> TileSAMError:
    return TileSAMError(
        f"'{path}' holds the committed objects of another image ({what}): they are kept, "
        "and this image was not set up. Choose another cache path for this image (committed "
        f"objects are saved beside the cache, as '<cache>.labels.zarr'), or delete '{path}' "
        "if its objects are no longer needed."
    )


def _size(shape: Any) -> str:
    return "x".join(str(n) for n in shape) if isinstance(shape, list | tuple) else str(shape)


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


def commit(array: Any, windows: Sequence[Window], *, overwrite: bool = False) -> tuple[int, list]:
    """Write the object of `windows` (one per slice) under the next free id, all or nothing;
    without `overwrite` only over background.

    Returns the id and the `Edit` list that undoes it (empty: nothing changed, no id used).
    """
    with _LOCK:
        new_id = next_id(array)
        edits = [e for w in windows if (e := _plan(array, w, new_id, overwrite)) is not None]
        if edits:
            attrs = {NEXT_ID: new_id + 1} if is_on_disk(array) else None
            write(array, [(e.region, e.after) for e in edits], [e.before for e in edits], attrs)
    return new_id, edits


def revert(array: Any, edits: Sequence[Edit]) -> None:
    """Undo `edits` (a commit's), all or nothing."""
    write(array, [(e.region, e.before) for e in reversed(edits)])


def next_id(array: Any) -> int:
    """The id the next object gets: above every id ever given (on disk, the store's
    ``next_id``, read from the disk: another viewer may have committed since)."""
    if not is_on_disk(array):
        return max_label(array) + 1
    return max(int(_attributes(array).get(NEXT_ID, 1)), 1)


def _plan(array: Any, window: Window, value: int, overwrite: bool) -> Edit | None:
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
    best = 0
    step = _CHUNK
    for z in range(array.shape[0] if array.ndim == 3 else 1):
        for y in range(0, array.shape[-2], step):
            region = (slice(y, y + step), slice(None))
            block = array[(z, *region)] if array.ndim == 3 else array[region]
            best = max(best, int(np.max(block, initial=0)))
    return best


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
    with _LOCK:
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
    with _LOCK:
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
