"""Which tiles of an embedding store are finished: one ``done`` chunk per tile.

A tile's ``done`` chunk is written last, after its embedding and metadata, and only ever
with ``True`` (removed again to discard a tile), so a ``done`` object exists exactly for
the finished tiles: whether a tile is done is one ``stat``, and the finished tiles are a
listing of three directory levels (25 ms against 9 s through zarr for 12 544 tiles).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tilesam.cache.tiling import TileIndex


def done_mark(store: Path, tile: TileIndex) -> Path:
    """The file of `tile`'s ``done`` chunk: zarr v3's default key ``done/c/<z>/<ty>/<tx>``,
    pinned when the store is created and checked when it is opened."""
    z, ty, tx = tile
    return store / "done" / "c" / str(z) / str(ty) / str(tx)


def finished_tiles(store: Path) -> Iterator[TileIndex]:
    """The tiles whose ``done`` chunk exists. Names that are not integers (e.g. a killed
    writer's temporary file) are skipped."""
    root = store / "done" / "c"
    for zd in _int_entries(root, dirs=True):
        for yd in _int_entries(root / zd, dirs=True):
            for xf in _int_entries(root / zd / yd, dirs=False):
                yield (int(zd), int(yd), int(xf))


def _int_entries(folder: Path, *, dirs: bool) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return [e.name for e in it if e.name.isdigit() and e.is_dir() == dirs]
    except FileNotFoundError:
        return []
