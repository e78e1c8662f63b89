"""Where the committed labels of an image live: in memory, or a labels store on disk.

Above `LARGE_VOXELS` the committed labels live in a zarr array on disk (a *labels store*,
beside the embedding cache) and every write lands there at once: a crash loses nothing
(the writes: :mod:`tilesam_napari._labels`).

A labels store belongs to one image. It carries the image's signature (shape, dtype, axes
and content fingerprint: the ``image`` part of the session's cache signature) and is never
reused for another image, nor replaced: opening it for another image is refused. A store
without a signature (made by an earlier TileSAM) is adopted as it is. Opening a store rolls
back a write that never finished.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.cache.signature import normalise_signature, signature_diff
from tilesam.errors import TileSAMError
from tilesam_napari._labels import CHUNK, NEXT_ID, WRITE_LOCK, max_label, recover

#: Volumes with more voxels than this get an on-disk zarr array for committed labels.
LARGE_VOXELS = 4096 * 4096
#: The store's attribute naming the image it belongs to (beside the writes' ``NEXT_ID``).
SIGNATURE_KEY = "tilesam_labels"


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
    with WRITE_LOCK:
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
    chunks = (*(1,) * (len(shape) - 2), *(min(CHUNK, n) for n in shape[-2:]))
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
