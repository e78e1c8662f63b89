"""SAM 2's high-resolution features in an embedding store (format 3).

SAM 2.1's mask decoder adds two feature maps of the image while it upscales a mask,
``(32, 256, 256)`` and ``(64, 128, 128)`` for a 1024-pixel input (``ModelCard.high_res_shapes``),
so a store made for a SAM 2 model keeps them beside each tile's embedding::

    high_res_0/         float16 (n_slices, n_ty, n_tx, 32, 256, 256), one chunk per tile
    high_res_1/         float16 (n_slices, n_ty, n_tx, 64, 128, 128), one chunk per tile
    high_res_checksum/  uint64 (n_slices, n_ty, n_tx, 2): a digest of each map, raw

compressed like the embeddings (:func:`tilesam.cache.store_layout.embedding_codecs`). The
header's ``high_res_shapes`` (sealed by its checksum) says which maps there are; stores
without them (SAM's models) stay format 2. A tile's maps and their digests are written
before its ``done`` mark, and every read checks them as the embedding's are checked
(XXH3-64 of the store's id, the tile's index, the map's number and its float16 bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
import zarr

from tilesam.cache.store_layout import CHUNK_KEYS, as_float16, chunk_file, embedding_codecs
from tilesam.cache.tile_digest import Damaged, read_raw
from tilesam.cache.tiling import TileIndex
from tilesam.errors import TileSAMError

#: The format of stores that keep high-resolution features (format 2 otherwise).
HIGH_RES_FORMAT = 3
CHECKSUM = "high_res_checksum"

Shapes = tuple[tuple[int, int, int], ...]


def array_name(index: int) -> str:
    """The array of the `index`-th high-resolution map (``high_res_0``, ...)."""
    return f"high_res_{index}"


def check_shapes(shapes: Sequence[Sequence[int]]) -> Shapes:
    """`shapes` as a tuple of ``(C, h, w)`` of positive ints; `TileSAMError` otherwise."""
    out = tuple(tuple(int(n) for n in shape) for shape in shapes)
    if not all(len(s) == 3 and min(s) > 0 for s in out):
        raise TileSAMError(f"high_res_shapes must be (C, h, w) triples, got {shapes!r}.")
    return out


def create_arrays(group: zarr.Group, grid: tuple[int, ...], shapes: Shapes) -> None:
    """Add the arrays of the high-resolution maps and their digests to a new store's group."""
    tile = (1, 1, 1)
    for index, shape in enumerate(shapes):
        group.create_array(
            array_name(index), shape=(*grid, *shape), chunks=(*tile, *shape), dtype="float16",
            fill_value=0.0, compressors=embedding_codecs(), chunk_key_encoding=CHUNK_KEYS,
        )  # fmt: skip
    group.create_array(
        CHECKSUM, shape=(*grid, len(shapes)), chunks=(*tile, len(shapes)), dtype="uint64",
        fill_value=0, compressors=None, chunk_key_encoding=CHUNK_KEYS,
    )  # fmt: skip


def digest(store_id: str, tile: TileIndex, index: int, values: np.ndarray) -> int:
    """The digest of a tile's `index`-th float16 map."""
    z, ty, tx = tile
    prefix = f"tilesam:{store_id}:{int(z)}:{int(ty)}:{int(tx)}:high_res_{index}:"
    h = xxhash.xxh3_64(prefix.encode())
    h.update(np.ascontiguousarray(values, dtype="<f2"))
    return h.intdigest()


class HighResArrays:
    """The high-resolution maps of an opened store: checked writes and checked reads.

    Raises `ValueError` on opening when an array is missing or has another shape (the
    store reports it as damaged).
    """

    def __init__(
        self, path: Path, group: zarr.Group, grid: tuple[int, ...], shapes: Shapes, store_id: str
    ) -> None:
        self.path, self.shapes, self._id = path, shapes, store_id
        self._arrays = []
        for index, shape in enumerate(shapes):
            self._arrays.append(_array(group, array_name(index), (*grid, *shape)))
        self._checksum = _array(group, CHECKSUM, (*grid, len(shapes)))

    def prepare(self, tile: TileIndex, features: Sequence[Any] | None) -> list[np.ndarray]:
        """A tile's maps, ``(C, h, w)`` each, as float16 after checking them (before
        anything of the tile is written)."""
        if features is None or len(features) != len(self.shapes):
            got = "none" if features is None else f"{len(features)}"
            raise TileSAMError(
                f"Tile {tile}: this cache keeps {len(self.shapes)} high-resolution feature "
                f"maps per tile {list(self.shapes)} (a SAM 2 model's), got {got}. Was the "
                "cache made for another model?"
            )
        out = []
        for index, (values, shape) in enumerate(zip(features, self.shapes)):
            what = f"High-resolution map {index} of tile {tile}"
            out.append(as_float16(values, shape, what))
        return out

    def write(self, tile: TileIndex, maps: Sequence[np.ndarray]) -> None:
        """Store `prepare`'s maps, then their digests (the caller marks the tile done)."""
        for array, values in zip(self._arrays, maps):
            array[tile] = values
        digests = [digest(self._id, tile, i, v) for i, v in enumerate(maps)]
        self._checksum[tile] = np.array(digests, dtype=np.uint64)

    def read(self, tile: TileIndex) -> tuple[np.ndarray, ...]:
        """A finished tile's maps as stored (float16), each checked; `Damaged` otherwise."""
        file = chunk_file(self.path, CHECKSUM, tile, 0)
        digests = read_raw(file, "<u8", len(self.shapes), "high-resolution checksum")
        out = []
        for index, array in enumerate(self._arrays):
            try:
                values = np.asarray(array[tile])
            except Exception as exc:  # noqa: BLE001 - codec errors mean a damaged chunk
                why = f"its high-resolution map {index} cannot be decoded ({exc})"
                raise Damaged(why) from None
            if digest(self._id, tile, index, values) != int(digests[index]):
                what = f"its high-resolution map {index}"
                if not chunk_file(self.path, array_name(index), tile, 0, 0, 0).is_file():
                    raise Damaged(f"{what} is missing")
                raise Damaged(
                    f"{what} does not match its checksum (changed, or copied from another "
                    "tile or cache)"
                )
            out.append(values)
        return tuple(out)


def open_arrays(
    path: Path, group: zarr.Group, head: dict[str, Any], store_id: str
) -> tuple[Shapes, HighResArrays | None]:
    """The shapes and arrays of a store's high-resolution maps (format 3); ``((), None)``
    for a store without them. `ValueError` where they are unreadable."""
    shapes = head.get("high_res_shapes")
    if int(head["format_version"]) < HIGH_RES_FORMAT and shapes is None:
        return (), None
    try:
        shapes = check_shapes(shapes)
    except (TypeError, TileSAMError) as exc:
        raise ValueError(f"high_res_shapes {shapes!r}") from exc
    if not shapes:
        raise ValueError("its header names no high_res_shapes")
    grid = tuple(int(n) for n in head["grid_shape"])
    return shapes, HighResArrays(path, group, grid, shapes, store_id)


def checked_maps(
    arrays: HighResArrays | None, tile: TileIndex, maps: Sequence[Any] | None
) -> list[np.ndarray]:
    """A tile's maps checked for a store with `arrays` (None: one without maps), before
    anything of the tile is written."""
    if arrays is not None:
        return arrays.prepare(tile, maps)
    if maps:
        raise TileSAMError(
            f"Tile {tile}: this cache keeps no high-resolution features (it was made for a "
            "SAM 1 model); a SAM 2 model's tiles need a cache of their own."
        )
    return []


def _array(group: zarr.Group, name: str, shape: tuple[int, ...]) -> zarr.Array:
    try:
        array = group[name]
    except KeyError:
        raise ValueError(f"array '{name}' is missing") from None
    if tuple(array.shape) != shape:
        raise ValueError(f"array '{name}' has shape {array.shape}, not {shape}")
    if array.metadata.chunk_key_encoding.to_dict() != CHUNK_KEYS:
        raise ValueError(f"array '{name}' does not use the default chunk keys")
    return array


def restore_embedding(
    features: np.ndarray,
    maps: Sequence[np.ndarray],
    original_size: tuple[int, int],
    input_size: tuple[int, int],
) -> Any:
    """A :class:`tilesam.models.sam2_model.Sam2Embedding` from a tile's stored embedding
    ``(C, h, w)`` and maps (float16), as float32 arrays with a leading batch axis.

    Only SAM 2 stores reach this (their model, and torch, is loaded to decode them).
    """
    from tilesam.models.sam2_model import Sam2Embedding

    return Sam2Embedding(
        features.astype(np.float32)[None],
        original_size=original_size,
        input_size=input_size,
        high_res_features=tuple(m.astype(np.float32)[None] for m in maps),
    )
