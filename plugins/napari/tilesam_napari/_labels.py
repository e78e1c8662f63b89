"""Label arrays behind the result layers: dense in memory, or chunked zarr on disk.

A committed object is written as a *window* (the object's bounding box on one slice), so
even a 50 000 x 50 000 slide only ever touches the chunks an object covers. Above
`LARGE_VOXELS` the committed labels live in a zarr array on disk and every write lands
there at once: a crash loses nothing.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Volumes with more voxels than this get an on-disk zarr array for committed labels.
LARGE_VOXELS = 4096 * 4096
_CHUNK = 1024  # chunk edge in y and x; one slice per chunk in z


def new_labels(
    shape: tuple[int, ...],
    dtype: np.dtype | type = np.uint32,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """A zero-filled label array: numpy in memory, or a chunked zarr array at `path`.

    An existing zarr array of the same shape at `path` is reopened, so committed
    objects survive a restart of the viewer.
    """
    if path is None:
        return np.zeros(shape, dtype=dtype)
    import zarr

    path = Path(path)
    if (path / "zarr.json").exists():
        existing = zarr.open_array(str(path), mode="r+")
        if tuple(existing.shape) == tuple(shape):
            return existing
    chunks = (*(1,) * (len(shape) - 2), *(min(_CHUNK, n) for n in shape[-2:]))
    return zarr.create_array(
        str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True
    )


def committed_path(shape: tuple[int, ...], cache: str | None) -> Path | None:
    """Where the committed labels of an image of `shape` live: None (in memory) up to
    `LARGE_VOXELS`, else beside the embedding `cache`, or in a temporary folder."""
    if int(np.prod(shape)) <= LARGE_VOXELS:
        return None
    if cache:
        return Path(cache).with_suffix(".labels.zarr")
    return Path(tempfile.mkdtemp(prefix="tilesam-labels-")) / "committed.zarr"


def is_on_disk(array: Any) -> bool:
    """Whether `array` is a zarr array (written through, never held whole in memory)."""
    return not isinstance(array, np.ndarray)


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
    """What a write replaced, so that it can be undone."""

    region: tuple
    before: np.ndarray


def paste(array: Any, window: Window, value: int, *, overwrite: bool = False) -> Edit | None:
    """Write `value` where `window` is True; without `overwrite` only over background.

    Returns the `Edit` to undo it, or None when nothing changed.
    """
    if window.empty:
        return None
    region = window.region
    before = np.array(array[region])  # a copy: a numpy region is a view
    target = window.mask if overwrite else window.mask & (before == 0)
    if not target.any():
        return None
    array[region] = np.where(target, value, before).astype(before.dtype, copy=False)
    return Edit(region, before)


def restore(array: Any, edit: Edit) -> None:
    """Undo `edit`."""
    array[edit.region] = edit.before


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
