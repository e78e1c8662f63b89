"""`EmbeddingStore`: tile embeddings in a zarr v3 group on disk, resumable, signed and
checksummed; one store per image x model x preprocessing.

The store is the one face of its parts, each in a module of its own: how it lies on disk
(:mod:`tilesam.cache.store_layout`), its header and seal (:mod:`~tilesam.cache.store_header`),
what it was computed for (:mod:`~tilesam.cache.signature`), its atomic creation
(:mod:`~tilesam.cache.creation`), each tile's chunks written crash-safe and read checked
(:mod:`~tilesam.cache.tile_chunks`, :mod:`~tilesam.cache.tile_digest`), which tiles are
done (:mod:`~tilesam.cache.done_marks`), who computes which (:mod:`~tilesam.cache.claims`),
checking a whole store (:mod:`~tilesam.cache.verify`) and the decoder's weights
(:mod:`~tilesam.cache.decoder_weights`).

A store is built in a hidden sibling folder and renamed into place: a store at its path is
always complete, and two processes creating one share the first one's. Embedders claim a
tile before computing it, so that concurrent runs share the work. ``done`` chunks are only
ever written with ``True`` and removed by `discard_tile`, so `is_done` is one ``stat`` and
`missing_tiles` lists the ``done/c`` directories instead of reading one chunk per tile.
Opening checks the header's seal (an edited signature is refused as damaged); every
`read_tile` and `read_meta` checks the tile's digests (`verify` checks them all: ``tilesam
check``). Stores of format 1 (before checksums) open and work unverified.

Create the store once (in the driver) before handing tiles to workers; workers then
`EmbeddingStore.open` it and call `write_tile`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from tilesam.cache import in_use
from tilesam.cache.claims import TileClaims
from tilesam.cache.decoder_weights import read_decoder, write_decoder
from tilesam.cache.done_marks import done_mark, finished_tiles
from tilesam.cache.high_res import checked_maps
from tilesam.cache.signature import check_signature
from tilesam.cache.store_header import checked_header, positive_ints
from tilesam.cache.store_layout import CLAIMS, META_FIELDS, as_float16
from tilesam.cache.store_opening import StoreOpening
from tilesam.cache.tile_chunks import TileChunks
from tilesam.cache.tile_digest import Damaged
from tilesam.cache.verify import StoreCheck, verify_store
from tilesam.errors import TileSAMError

__all__ = ["EmbeddingStore"]


class EmbeddingStore(StoreOpening):
    """Tile embeddings of one image for one model and preprocessing, on disk.

    Use `create`, `open` or `open_or_create` (:mod:`tilesam.cache.store_opening`); do not
    call the constructor directly.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> path = tempfile.mkdtemp() + "/cache.zarr"
    >>> store = EmbeddingStore.create(path, signature={"model": "tiny"},
    ...                               grid_shape=(1, 2, 2), embedding_shape=(8, 4, 4))
    >>> store.write_tile(0, 1, 0, np.ones((8, 4, 4), np.float32),
    ...                  {"tile_shape": (100, 64), "input_shape": (64, 41)})
    >>> store.n_done, store.missing_tiles()[:2]
    (1, [(0, 0, 0), (0, 0, 1)])
    >>> float(store.read_tile(0, 1, 0).mean())
    1.0
    >>> store.verify().ok
    True
    """

    def __init__(self, path: Path, group: zarr.Group, mode: str) -> None:
        self.path = path
        self.mode = mode
        self._group = group
        header = checked_header(path, dict(group.attrs))
        self.signature: dict[str, Any] = header.signature
        self.grid_shape: tuple[int, ...] = header.grid_shape
        self.embedding_shape: tuple[int, ...] = header.embedding_shape
        self.format_version: int = header.format_version
        self._header = header.fields
        #: Whether tiles carry checksums (format 2); format 1 stores are read unverified.
        self.verified = header.verified
        #: How the embeddings are stored: "float16" (formats 1-3) or "q8" (format 4).
        self.encoding: str = header.encoding
        self._tiles = TileChunks(path, group, header)
        #: The shapes of each tile's high-resolution feature maps (SAM 2; empty for SAM).
        self.high_res_shapes = self._tiles.high_res_shapes
        self._in_use = in_use.use(self, path, create=mode == "r+")  # never replaced while open

    def close(self) -> None:
        """Let go of the store now rather than when the object is collected: from then on
        another process may replace it (``overwrite``) and its file system be unmounted.
        The object still reads and writes, unprotected: close it when done with it."""
        self._in_use()

    def check_signature(self, signature: Mapping[str, Any]) -> None:
        """Raise `TileSAMError` listing every field where `signature` differs from the store's."""
        check_signature(self.path, self.signature, signature)

    # -- tiles ------------------------------------------------------------------------------
    @property
    def n_tiles(self) -> int:
        """Number of tiles over all slices."""
        return math.prod(self.grid_shape)

    @property
    def n_done(self) -> int:
        """Number of finished tiles."""
        return sum(1 for _ in finished_tiles(self.path))

    def claims(self) -> TileClaims:
        """New claims on this store's tiles (:mod:`tilesam.cache.claims`), for one embedder.
        Every embedder holds its own, threads of one process too: a tile one holds is
        never computed by another (a shared object would count the other's as its own)."""
        return TileClaims(self.path / CLAIMS)

    def write_tile(
        self,
        z: int,
        ty: int,
        tx: int,
        embedding: np.ndarray,
        meta: Mapping[str, Sequence[int]],
        high_res: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Store one tile's embedding, metadata and their checksums, then mark it done.

        Parameters
        ----------
        embedding : numpy.ndarray, shape (C, h, w)
            Stored as float16.
        meta : dict
            ``{"tile_shape": (h, w), "input_shape": (h, w)}``: the tile's size before
            padding and its size after resizing to the model input.
        high_res : sequence of numpy.ndarray, optional
            The tile's high-resolution feature maps, ``high_res_shapes`` (a SAM 2 store's,
            required there; stored as float16).
        """
        self._check_writable()
        self._check_index(z, ty, tx)
        emb = np.asarray(embedding)
        emb16 = as_float16(emb, self.embedding_shape, f"Embedding for tile {(z, ty, tx)}")
        values = _check_meta(meta)
        tile = (int(z), int(ty), int(tx))
        maps = checked_maps(self._tiles.high_res, tile, high_res)
        try:
            self._tiles.write(tile, emb, emb16, values, maps)
        except OSError as err:  # a full disk, a lost network share, no permission
            raise TileSAMError(
                f"Could not write tile {tile} into the cache {self.path}: "
                f"{err.strerror or err}. Free space on that disk (or choose a cache on another "
                "disk) and run the same command again: the tiles already stored are kept."
            ) from err

    def read_tile(self, z: int, ty: int, tx: int) -> np.ndarray:
        """One tile's embedding, ``(C, h, w)``, its checksum checked: float16 as stored
        (converting to float32 is the caller's: torch does it several times faster than
        numpy), or float32 dequantised from a format-4 store's codes.

        Raises
        ------
        TileSAMError
            If the tile is not done yet, or damaged (the message says how to recompute it).
        """
        tile = self._require_done(z, ty, tx)
        try:
            return self._tiles.embedding(tile)
        except Damaged as why:
            raise self._damaged(tile, str(why)) from None

    def read_high_res(self, z: int, ty: int, tx: int) -> tuple[np.ndarray, ...]:
        """One tile's high-resolution feature maps as stored (float16, ``high_res_shapes``),
        their checksums checked; ``()`` for a store without them (SAM's models)."""
        tile = self._require_done(z, ty, tx)
        if self._tiles.high_res is None:
            return ()
        try:
            return self._tiles.high_res.read(tile)
        except Damaged as why:
            raise self._damaged(tile, str(why)) from None

    def read_meta(self, z: int, ty: int, tx: int) -> dict[str, tuple[int, int]]:
        """The tile's metadata as written, its checksum checked: ``{"tile_shape": (h, w),
        "input_shape": (h, w)}``."""
        tile = self._require_done(z, ty, tx)
        try:
            return self._tiles.meta(tile)
        except Damaged as why:
            raise self._damaged(tile, str(why)) from None

    def tile_problem(self, z: int, ty: int, tx: int) -> str | None:
        """What is wrong with a finished tile (its chunks, metadata, checksums), or None."""
        tile = (int(z), int(ty), int(tx))
        try:
            self._tiles.meta(tile)
            self._tiles.embedding(tile)
            if self._tiles.high_res is not None:
                self._tiles.high_res.read(tile)
        except Damaged as why:
            return str(why)
        return None

    def is_done(self, z: int, ty: int, tx: int) -> bool:
        """Whether the tile's embedding is completely stored."""
        self._check_index(z, ty, tx)
        return done_mark(self.path, (z, ty, tx)).is_file()  # a stat, not a zarr read (~1 ms)

    def discard_tile(self, z: int, ty: int, tx: int) -> None:
        """Mark a tile not done (e.g. a damaged one) so that the next run recomputes it."""
        self._check_writable()
        self._check_index(z, ty, tx)
        # Remove the chunk itself rather than writing False, which zarr would store as a
        # chunk if its `write_empty_chunks` option were on.
        done_mark(self.path, (z, ty, tx)).unlink(missing_ok=True)

    def done_tiles(self) -> list[tuple[int, int, int]]:
        """Finished tiles ``(z, ty, tx)``, sorted."""
        return sorted(finished_tiles(self.path))

    def missing_tiles(self) -> list[tuple[int, int, int]]:
        """Tiles still to compute ``(z, ty, tx)``, sorted (slice by slice, row-major)."""
        done = set(finished_tiles(self.path))
        nz, ny, nx = self.grid_shape
        return [
            (z, ty, tx)
            for z in range(nz)
            for ty in range(ny)
            for tx in range(nx)
            if (z, ty, tx) not in done
        ]

    def verify(self, *, repair: bool = False, progress: bool = False) -> StoreCheck:
        """Check every finished tile (chunks present and readable, metadata, checksums) and
        the decoder's weights; with `repair`, discard the damaged tiles, so that the next
        ``Session.embed`` / ``tilesam embed`` recomputes them. See
        :func:`tilesam.cache.verify.verify_store`."""
        if repair:
            self._check_writable()
        return verify_store(self, repair=repair, progress=progress)

    # -- the decoder's weights --------------------------------------------------------------
    def write_decoder(self, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
        """Keep the model's prompt encoder and mask decoder in the store, so that a later
        session answers clicks without torch (see :mod:`tilesam.cache.decoder_weights`)."""
        self._check_writable()
        write_decoder(self._group, self.path, weights, config)

    def read_decoder(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The decoder's weights and config as :meth:`write_decoder` stored them; None when
        the store holds none or they do not check out."""
        return read_decoder(self._group)

    def info(self) -> dict[str, Any]:
        """A summary for ``tilesam info``: format, signature, shapes, progress, size on disk."""
        n_done = self.n_done
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        decoder = sum(f.stat().st_size for f in (self.path / "decoder").rglob("*") if f.is_file())
        return {
            "path": str(self.path),
            "format_version": self.format_version,
            "verified": self.verified,
            "created": self._header.get("created"),
            "signature": self.signature,
            "grid_shape": self.grid_shape,
            "embedding_shape": self.embedding_shape,
            "embedding_dtype": self._header.get("embedding_dtype", "float16"),
            "embedding_encoding": self.encoding,
            "high_res_shapes": self.high_res_shapes,
            "n_tiles": self.n_tiles,
            "n_done": n_done,
            "complete": n_done == self.n_tiles,
            "bytes_on_disk": size,
            "decoder_bytes": decoder,
        }

    def __repr__(self) -> str:
        return (
            f"EmbeddingStore('{self.path}', grid={self.grid_shape}, "
            f"embedding={self.embedding_shape}, mode={self.mode!r})"
        )

    # -- internals --------------------------------------------------------------------------
    def _damaged(self, tile: tuple[int, int, int], why: str) -> TileSAMError:
        z, ty, tx = tile
        return TileSAMError(
            f"Tile {tile} of embedding cache '{self.path}' is damaged: {why}. Run "
            f"`tilesam check {self.path} --repair` and then `tilesam embed` to recompute it "
            f"(in Python: store.verify(repair=True) or store.discard_tile({z}, {ty}, {tx}), "
            "then Session.embed())."
        )

    def _require_done(self, z: int, ty: int, tx: int) -> tuple[int, int, int]:
        if not self.is_done(z, ty, tx):
            raise TileSAMError(
                f"Tile {(z, ty, tx)} has no embedding yet in cache '{self.path}' "
                f"({self.n_done}/{self.n_tiles} tiles done). Compute it first with Session.embed() "
                "or `tilesam embed` (both resume where they stopped)."
            )
        return (int(z), int(ty), int(tx))

    def _check_index(self, z: int, ty: int, tx: int) -> None:
        if not all(0 <= i < n for i, n in zip((z, ty, tx), self.grid_shape, strict=True)):
            raise TileSAMError(
                f"Tile {(z, ty, tx)} is outside the cache's grid {self.grid_shape} "
                "(n_slices, n_ty, n_tx)."
            )

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise TileSAMError(
                f"Embedding cache '{self.path}' is open read-only; open it with mode='r+'."
            )


# -- helpers ------------------------------------------------------------------------------
def _check_meta(meta: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    if not isinstance(meta, Mapping) or set(meta) != set(META_FIELDS):
        got = sorted(meta) if isinstance(meta, Mapping) else type(meta).__name__
        raise TileSAMError(f"Tile meta must have exactly the keys {list(META_FIELDS)}, got {got}.")
    return {
        name: positive_ints(meta[name], 2, f"meta['{name}'] (h, w)")  # type: ignore[misc]
        for name in META_FIELDS
    }
