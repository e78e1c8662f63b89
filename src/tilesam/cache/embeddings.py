"""A store's tile embeddings as the decoder takes them, the last few kept decoded.

Reading a tile from a zarr cache (decompress, check its digests, float16 to float32) costs
about as much as a click's decoder; a stitched object's next clicks revisit the same few
tiles, so the last :data:`RECENT` are kept. Each tile's metadata is read with it (checked
by its digest in a store of format 2, a 10 us file read) and its ``tile_shape`` must be the
tile's size that the grid gives, so that a tile's damaged metadata never reaches the
decoder. A SAM 2 model's cache gives each tile back as a ``Sam2Embedding``, its
high-resolution maps read (and checked) with it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from tilesam.cache.high_res import restore_embedding
from tilesam.cache.memory import TileStore
from tilesam.cache.tiling import TileIndex
from tilesam.decode.embedding import ImageEmbedding, token_major
from tilesam.errors import TileSAMError

RECENT = 16  # decoded tile embeddings kept for the next clicks (a stitched object's tiles)


class TileEmbeddings:
    """Embeddings of the finished tiles of `store`, read on demand.

    Examples
    --------
    >>> import numpy as np
    >>> from tilesam.cache.memory import MemoryStore
    >>> store = MemoryStore((1, 1, 1), (4, 2, 2))
    >>> store.write_tile(0, 0, 0, np.ones((4, 2, 2)), {"tile_shape": (9, 9), "input_shape": (8, 8)})
    >>> emb = TileEmbeddings(store).read((0, 0, 0), shape=(9, 9))
    >>> emb.features.shape, emb.original_size, emb.input_size
    ((1, 4, 2, 2), (9, 9), (8, 8))
    """

    def __init__(self, store: TileStore, recent: int = RECENT) -> None:
        self.store = store
        self.recent = recent
        self._recent: OrderedDict[TileIndex, ImageEmbedding] = OrderedDict()
        # A GUI's prompt and a worker's may read at once (napari, QGIS): the recent tiles
        # change under a lock; the reading itself does not need one.
        self._lock = threading.Lock()

    def read(self, tile: TileIndex, shape: tuple[int, int]) -> ImageEmbedding:
        """The embedding of the finished `tile`, whose pixels are `shape` ``(h, w)``."""
        with self._lock:
            known = self._recent.get(tile)
            if known is not None:
                self._recent.move_to_end(tile)
                return known
        meta = self.store.read_meta(*tile)
        if tuple(meta["tile_shape"]) != tuple(shape):
            path = getattr(self.store, "path", None)
            raise TileSAMError(
                f"Tile {tile} of embedding cache '{path}' is damaged: its tile_shape "
                f"{meta['tile_shape']} is not the tile's size {tuple(shape)}. Run `tilesam "
                f"check {path} --repair` and then `tilesam embed` to recompute it."
            )
        sizes = (meta["tile_shape"], meta["input_shape"])
        if getattr(self.store, "high_res_shapes", ()):  # a SAM 2 model's cache
            maps = self.store.read_high_res(*tile)
            emb = restore_embedding(self.store.read_tile(*tile), maps, *sizes)
        else:
            features = token_major(self.store.read_tile(*tile))
            emb = ImageEmbedding(features[None], *sizes)
        with self._lock:
            self._recent[tile] = emb
            if len(self._recent) > self.recent:
                self._recent.popitem(last=False)
        return emb
