"""Tile embeddings kept in memory, for a session without an on-disk cache; and the store
interface the embedding loop writes to (:class:`tilesam.cache.store.EmbeddingStore` is the
other)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tilesam.cache.tiling import TileIndex
from tilesam.errors import TileSAMError


class TileStore(Protocol):
    """What `embed_tiles` needs of a store (`EmbeddingStore` or `MemoryStore`)."""

    grid_shape: tuple[int, ...]
    embedding_shape: tuple[int, ...]
    high_res_shapes: tuple[tuple[int, ...], ...]  # SAM 2's feature maps; () for SAM

    def write_tile(
        self, z: int, ty: int, tx: int, embedding: np.ndarray, meta: Any, high_res: Any = None
    ) -> None: ...
    def read_tile(self, z: int, ty: int, tx: int) -> np.ndarray: ...  # float16, as stored
    def read_high_res(self, z: int, ty: int, tx: int) -> tuple[np.ndarray, ...]: ...
    def read_meta(self, z: int, ty: int, tx: int) -> dict[str, tuple[int, int]]: ...
    def is_done(self, z: int, ty: int, tx: int) -> bool: ...
    def missing_tiles(self) -> list[TileIndex]: ...
    def close(self) -> None: ...


class MemoryStore:
    """Tile embeddings kept in memory, float16 like `EmbeddingStore` so results match it.

    Examples
    --------
    >>> store = MemoryStore((1, 1, 2), (4, 2, 2))
    >>> store.write_tile(0, 0, 1, np.ones((4, 2, 2)), {"tile_shape": (9, 9), "input_shape": (8, 8)})
    >>> store.missing_tiles(), store.read_tile(0, 0, 1).dtype
    ([(0, 0, 0)], dtype('float16'))
    """

    path = None

    def __init__(
        self,
        grid_shape: Sequence[int],
        embedding_shape: Sequence[int],
        high_res_shapes: Sequence[Sequence[int]] = (),
    ) -> None:
        self.grid_shape = tuple(int(n) for n in grid_shape)
        self.embedding_shape = tuple(int(n) for n in embedding_shape)
        self.high_res_shapes = tuple(tuple(int(n) for n in s) for s in high_res_shapes)
        self._tiles: dict[TileIndex, tuple[np.ndarray, dict[str, tuple[int, int]]]] = {}
        self._high_res: dict[TileIndex, tuple[np.ndarray, ...]] = {}

    @property
    def n_tiles(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def n_done(self) -> int:
        return len(self._tiles)

    def write_tile(
        self, z: int, ty: int, tx: int, embedding: np.ndarray, meta: Any, high_res: Any = None
    ) -> None:
        meta = {k: (int(v[0]), int(v[1])) for k, v in meta.items()}
        if self.high_res_shapes:  # float16 like EmbeddingStore's
            maps = [np.asarray(m) for m in high_res or ()]
            if [m.shape for m in maps] != list(self.high_res_shapes):
                raise TileSAMError(
                    f"Tile {(z, ty, tx)}: expected high-resolution maps {self.high_res_shapes}, "
                    f"got {[m.shape for m in maps]}."
                )
            self._high_res[(z, ty, tx)] = tuple(m.astype(np.float16) for m in maps)
        self._tiles[(z, ty, tx)] = (np.asarray(embedding).astype(np.float16), meta)

    def read_tile(self, z: int, ty: int, tx: int) -> np.ndarray:
        return self._get(z, ty, tx)[0]

    def read_high_res(self, z: int, ty: int, tx: int) -> tuple[np.ndarray, ...]:
        self._get(z, ty, tx)
        return self._high_res.get((z, ty, tx), ())

    def read_meta(self, z: int, ty: int, tx: int) -> dict[str, tuple[int, int]]:
        return dict(self._get(z, ty, tx)[1])

    def is_done(self, z: int, ty: int, tx: int) -> bool:
        return (z, ty, tx) in self._tiles

    def missing_tiles(self) -> list[TileIndex]:
        nz, ny, nx = self.grid_shape
        every = ((z, y, x) for z in range(nz) for y in range(ny) for x in range(nx))
        return [t for t in every if t not in self._tiles]

    def close(self) -> None:
        """Nothing to let go of: the tiles live as long as the object."""

    def _get(self, z: int, ty: int, tx: int):
        try:
            return self._tiles[(z, ty, tx)]
        except KeyError:
            raise TileSAMError(f"Tile {(z, ty, tx)} has no embedding yet.") from None
