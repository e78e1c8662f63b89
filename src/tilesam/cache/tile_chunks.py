"""A store's per-tile chunks: one tile's embedding, metadata, high-resolution maps and
digests, written so that a killed writer leaves nothing half-done, and read back checked.

Concurrency and crash safety. Every array is chunked one tile per chunk, so a writer of
tile (z, ty, tx) only ever creates the objects ``<array>/c/z/ty/tx``: writers of different
tiles (threads, processes, dask workers) never read-modify-write a shared chunk, and
nothing shared (group or array metadata) is written after the store is created. A tile's
``done`` chunk is written last, after its embedding, metadata and checksum chunks have been
stored, so a process killed mid-tile leaves the tile "not done" (it is recomputed on
resume) and never "done" with partial data. zarr's LocalStore also writes each chunk to a
temporary file and renames it into place, so a chunk is either absent or whole.

Integrity. Every read checks the tile's digests (:mod:`tilesam.cache.tile_digest`), so a
deleted, damaged or swapped chunk raises `Damaged`, which the store turns into one
`TileSAMError` naming the tile and the fix. Stores of format 1 (before checksums) are read
unverified. Opening checks every array against the header (present, of its shape, with the
default chunk keys); anything off is the store's "damaged" error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from tilesam.cache.codec import Q8_FORMAT, QuantisedTiles
from tilesam.cache.high_res import HighResArrays, open_arrays
from tilesam.cache.store_header import StoreHeader, corrupt
from tilesam.cache.store_layout import CHUNK_KEYS, FORMAT_VERSION, META_FIELDS, chunk_file
from tilesam.cache.tile_digest import Damaged, embedding_digest, meta_digest, read_raw
from tilesam.cache.tiling import TileIndex

#: The little-endian dtypes of the small per-tile pairs read as files.
_LE = {"int32": "<i4", "uint64": "<u8"}


class TileChunks:
    """The per-tile arrays of an open store: checked writes and checked reads.

    Raises the store's "damaged" `TileSAMError` on opening when an array is missing, has
    another shape or other chunk keys, or the encoding is unknown.
    """

    def __init__(self, path: Path, group: zarr.Group, header: StoreHeader) -> None:
        self.path = path
        self._id = header.store_id
        arrays = _present_arrays(path, group, header.verified)
        self._emb, self._done = arrays["embeddings"], arrays["done"]
        self._meta = {name: arrays[name] for name in META_FIELDS}
        self._checksum = arrays.get("checksum")
        self._q8 = _quantised_tiles(path, group, header)
        _check_arrays(path, arrays, header)
        # The small per-tile chunks are read as files (10 us, not a 1 ms zarr read) where
        # they are stored raw, as stores are made.
        self._raw = {
            name: _is_raw(arrays[name], dtype)
            for name, dtype in [*((n, "int32") for n in META_FIELDS), ("checksum", "uint64")]
            if name in arrays
        }
        #: The shapes of each tile's high-resolution feature maps (SAM 2; empty for SAM).
        self.high_res_shapes, self.high_res = _high_res_arrays(path, group, header, self._q8)

    def write(
        self,
        tile: TileIndex,
        embedding: np.ndarray,
        emb16: np.ndarray,
        meta: dict[str, tuple[int, int]],
        maps: list[np.ndarray],
    ) -> None:
        """Store a checked tile: its embedding (`emb16`, or `embedding` quantised), `meta`,
        `maps`, their digests, and last its done mark (see the module docstring)."""
        if self._q8 is None:
            self._emb[tile] = emb16
        for name, value in meta.items():
            self._meta[name][tile] = value
        if self.high_res is not None:
            self.high_res.write(tile, maps)
        if self._q8 is not None:
            digests = (self._q8.write(tile, embedding), meta_digest(self._id, tile, meta))
            self._checksum[tile] = np.array(digests, dtype=np.uint64)
        elif self._checksum is not None:
            digests = (embedding_digest(self._id, tile, emb16), meta_digest(self._id, tile, meta))
            self._checksum[tile] = np.array(digests, dtype=np.uint64)
        self._done[tile] = True

    def embedding(self, tile: TileIndex) -> np.ndarray:
        """A finished tile's embedding, checked; `Damaged` otherwise."""
        if self._q8 is not None:
            return self._q8.read(tile, int(self._digests(tile)[0]))
        file = chunk_file(self.path, "embeddings", tile, 0, 0, 0)
        try:
            emb = self._emb[tile]
        except Exception as exc:  # noqa: BLE001 - codec errors mean a damaged chunk
            raise Damaged(f"its embedding chunk cannot be decoded ({exc})") from None
        if self._checksum is None:  # format 1: no digests; a deleted chunk reads as zeros
            if not file.is_file():
                raise Damaged("its embedding chunk is missing")
            return emb
        if embedding_digest(self._id, tile, emb) != int(self._digests(tile)[0]):
            if not file.is_file():
                raise Damaged("its embedding chunk is missing")
            raise Damaged(
                "its embedding does not match its checksum (changed, or copied from another "
                "tile or cache)"
            )
        return emb

    def meta(self, tile: TileIndex) -> dict[str, tuple[int, int]]:
        """A finished tile's metadata, checked; `Damaged` otherwise."""
        values = {name: self._small(name, tile, "int32") for name in META_FIELDS}
        meta = {name: (int(v[0]), int(v[1])) for name, v in values.items()}
        if self._checksum is not None:
            if meta_digest(self._id, tile, meta) != int(self._digests(tile)[1]):
                raise Damaged(
                    f"its metadata {meta} does not match its checksum (changed, or copied "
                    "from another tile or cache)"
                )
        bad = [name for name, (h, w) in meta.items() if h <= 0 or w <= 0]
        if bad:
            raise Damaged(f"its {bad[0]} is {meta[bad[0]]}, not a size")
        return meta

    def _digests(self, tile: TileIndex) -> np.ndarray:
        return self._small("checksum", tile, "uint64")

    def _small(self, name: str, tile: TileIndex, dtype: str) -> np.ndarray:
        """A per-tile pair (metadata or digests), read as a file where stored raw."""
        if self._raw.get(name):
            return read_raw(chunk_file(self.path, name, tile, 0), _LE[dtype], 2, name)
        array = self._checksum if name == "checksum" else self._meta[name]
        try:
            return np.asarray(array[tile])
        except Exception as exc:  # noqa: BLE001 - codec errors mean a damaged chunk
            raise Damaged(f"its {name} chunk cannot be decoded ({exc})") from None


def _present_arrays(path: Path, group: zarr.Group, verified: bool) -> dict[str, zarr.Array]:
    """The store's per-tile arrays by name (``checksum`` from format 2 on)."""
    names = ("embeddings", "done", *META_FIELDS) + (("checksum",) if verified else ())
    try:
        return {name: group[name] for name in names}
    except KeyError as exc:
        raise corrupt(path, f"array {exc} is missing") from exc
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for bad metadata
        raise corrupt(path, f"an array's metadata cannot be read ({exc})") from exc


def _quantised_tiles(path: Path, group: zarr.Group, header: StoreHeader) -> QuantisedTiles | None:
    """A format-4 store's quantised embeddings; None for float16 ones."""
    version, encoding = header.format_version, header.encoding
    if encoding == "q8" and version == Q8_FORMAT:
        try:
            return QuantisedTiles(path, group, header.store_id)
        except (KeyError, ValueError) as exc:
            raise corrupt(path, f"its quantised embeddings are unreadable ({exc})") from exc
    if encoding != "float16" or version == Q8_FORMAT:
        raise corrupt(path, f"format {version} with encoding {encoding!r}")
    return None


def _check_arrays(path: Path, arrays: dict[str, zarr.Array], header: StoreHeader) -> None:
    """Every array has the shape the header says and zarr v3's default chunk keys."""
    grid = header.grid_shape
    expected = {
        "embeddings": (*grid, *header.embedding_shape),
        "done": grid,
        **{name: (*grid, 2) for name in (*META_FIELDS, "checksum")},
    }
    for name, array in arrays.items():
        if tuple(array.shape) != expected[name]:
            shape = expected[name]
            raise corrupt(path, f"array '{name}' has shape {array.shape}, not {shape}")
        if array.metadata.chunk_key_encoding.to_dict() != CHUNK_KEYS:
            raise corrupt(path, f"array '{name}' does not use the default chunk keys")


def _high_res_arrays(
    path: Path, group: zarr.Group, header: StoreHeader, q8: QuantisedTiles | None
) -> tuple[Any, HighResArrays | None]:
    """The shapes and arrays of the store's high-resolution maps (format 3)."""
    head = header.fields
    try:
        # Format 4 keeps no maps (SAM's models only), like format 2.
        plain = q8 is not None and "high_res_shapes" not in head
        shown = {**head, "format_version": FORMAT_VERSION} if plain else head
        return open_arrays(path, group, shown, header.store_id)
    except ValueError as exc:
        raise corrupt(path, f"its high-resolution features are unreadable ({exc})") from exc


def _is_raw(array: zarr.Array, dtype: str) -> bool:
    """Whether `array`'s chunks are stored as raw little-endian values, one pair per tile."""
    codecs = array.metadata.codecs
    return (
        array.dtype == np.dtype(dtype)
        and tuple(array.chunks[-1:]) == (2,)
        and len(codecs) == 1
        and type(codecs[0]).__name__ == "BytesCodec"
        and str(getattr(codecs[0].endian, "value", codecs[0].endian)) == "little"
    )
