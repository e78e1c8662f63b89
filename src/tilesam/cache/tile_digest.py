"""Checksums of a store's tiles (format 2): what a reader checks before it trusts a tile.

Every tile has two digests, stored raw in its chunk of the ``checksum`` array (two
little-endian uint64, 16 bytes) before its ``done`` mark is written:

- of its embedding: XXH3-64 of the store's id, the tile's index and the float16 bytes;
- of its metadata: XXH3-64 of the store's id, the tile's index and its ``tile_shape`` and
  ``input_shape`` (four int32).

The tile's index and the store's id in the digests make a chunk copied from another tile,
or from another store, fail its check as surely as a damaged or deleted one (zarr reads a
deleted chunk as zeros). XXH3 hashes a `tiny` tile's 2 MiB in about 0.05 ms.

The small chunks (metadata and digests) are read as files, not through zarr (a zarr read
costs about 1 ms; a file of 8 or 16 bytes, 10 us): their arrays are uncompressed, raw
little-endian, which the store checks when it opens.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xxhash

from tilesam.cache.store_layout import META_FIELDS
from tilesam.cache.tiling import TileIndex


class Damaged(Exception):
    """Internal: what is wrong with a tile (the store turns it into a TileSAMError)."""


def embedding_digest(store_id: str, tile: TileIndex, embedding: np.ndarray) -> int:
    """The digest of a tile's float16 embedding."""
    h = xxhash.xxh3_64(_prefix(store_id, tile, "embedding"))
    h.update(np.ascontiguousarray(embedding, dtype="<f2"))
    return h.intdigest()


def meta_digest(store_id: str, tile: TileIndex, meta: Mapping[str, tuple[int, int]]) -> int:
    """The digest of a tile's metadata."""
    values = np.array([meta[name] for name in META_FIELDS], dtype="<i4")
    h = xxhash.xxh3_64(_prefix(store_id, tile, "meta"))
    h.update(values.tobytes())
    return h.intdigest()


def read_raw(file: Path, dtype: str, count: int, what: str) -> np.ndarray:
    """The `count` values of an uncompressed chunk file; `Damaged` when it is missing or
    has another size."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise Damaged(f"its {what} chunk is missing") from None
    except OSError as err:
        raise Damaged(f"its {what} chunk cannot be read ({err.strerror or err})") from None
    expected = np.dtype(dtype).itemsize * count
    if len(data) != expected:
        raise Damaged(f"its {what} chunk has {len(data)} bytes, not {expected}")
    return np.frombuffer(data, dtype=dtype)


def _prefix(store_id: str, tile: TileIndex, part: str) -> bytes:
    z, ty, tx = tile
    return f"tilesam:{store_id}:{int(z)}:{int(ty)}:{int(tx)}:{part}:".encode()
