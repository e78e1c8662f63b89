"""`EmbeddingStore`: tile embeddings in a zarr v3 group on disk, resumable and signed.

Layout of one store (one per image x model x preprocessing)::

    cache.zarr/
      zarr.json      group attributes: {"tilesam": {format_version, grid/embedding shape,
                     ...}, "signature": {caller's dict: model, weights sha256, tile size,
                     halo, normalisation, image shape/dtype, content signature, ...}}
      embeddings/    float16 (n_slices, n_ty, n_tx, C, h, w), one chunk per tile, blosc
      tile_shape/    int32 (n_slices, n_ty, n_tx, 2): tile size before padding, one chunk/tile
      input_shape/   int32 (n_slices, n_ty, n_tx, 2): size after resizing, one chunk/tile
      done/          bool (n_slices, n_ty, n_tx), chunk (1, 1, 1): one object per tile
      decoder/       float32, one chunk: the model's prompt encoder and mask decoder weights
                     (optional; see `write_decoder`), so that clicks need no torch

Concurrency and crash safety. Every array is chunked one tile per chunk, so a writer
of tile (z, ty, tx) only ever creates the objects ``<array>/c/z/ty/tx``: writers of
different tiles (threads, processes, dask workers) never read-modify-write a shared
chunk, and nothing shared (group or array metadata) is written after `create`. A
tile's ``done`` chunk is written last, after its embedding and metadata chunks have
been stored, so a process killed mid-tile leaves the tile "not done" (it is recomputed
on resume) and never "done" with partial data. zarr's LocalStore also writes each chunk
to a temporary file and renames it into place, so a chunk is either absent or whole.
``done`` chunks are only ever written with ``True`` and removed by `discard_tile`, so a
``done`` object exists exactly for the finished tiles: `is_done` is one ``stat`` and
`missing_tiles` lists the ``done/c`` directories instead of reading one chunk per tile.

Create the store once (in the driver) before handing tiles to workers; workers then
`EmbeddingStore.open` it and call `write_tile`. Signatures (what a store was computed for)
are normalised and compared in :mod:`tilesam.cache.signature`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from tilesam.cache.decoder_weights import read_decoder, write_decoder
from tilesam.cache.done_marks import done_mark, finished_tiles
from tilesam.cache.signature import check_signature, content_signature, normalise_signature
from tilesam.cache.store_layout import (
    CHUNK_KEYS,
    FORMAT_VERSION,
    KIND,
    META_FIELDS,
    new_group,
    read_header,
)
from tilesam.errors import TileSAMError

# Over 400 lines, and kept whole: one concept, the life of a store (create, open, check,
# write, read, discard); its layout, its done marks and its decoder weights live beside it.
__all__ = ["FORMAT_VERSION", "META_FIELDS", "EmbeddingStore", "content_signature"]


class EmbeddingStore:
    """Tile embeddings of one image for one model and preprocessing, on disk.

    Use `create`, `open` or `open_or_create`; do not call the constructor directly.

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
    """

    def __init__(self, path: Path, group: zarr.Group, mode: str) -> None:
        self.path = path
        self.mode = mode
        self._group = group
        attrs = dict(group.attrs)
        head = attrs["tilesam"]
        self.grid_shape: tuple[int, ...] = tuple(head["grid_shape"])
        self.embedding_shape: tuple[int, ...] = tuple(head["embedding_shape"])
        self.signature: dict[str, Any] = attrs.get("signature", {})
        self._header = head
        try:
            self._emb = group["embeddings"]
            self._done = group["done"]
            self._meta = {name: group[name] for name in META_FIELDS}
        except KeyError as exc:
            raise _corrupt(path, f"array {exc} is missing") from exc
        except Exception as exc:  # noqa: BLE001 - zarr raises many types for bad metadata
            raise _corrupt(path, f"an array's metadata cannot be read ({exc})") from exc
        # Each meta read is a zarr chunk read (~1 ms); a stored tile's meta never changes.
        self._meta_seen: dict[tuple[int, int, int], dict[str, tuple[int, int]]] = {}
        expected = {
            "embeddings": (*self.grid_shape, *self.embedding_shape),
            "done": self.grid_shape,
            **{name: (*self.grid_shape, 2) for name in META_FIELDS},
        }
        arrays = {"embeddings": self._emb, "done": self._done, **self._meta}
        for name, shape in expected.items():
            if tuple(arrays[name].shape) != shape:
                raise _corrupt(path, f"array '{name}' has shape {arrays[name].shape}, not {shape}")
            if arrays[name].metadata.chunk_key_encoding.to_dict() != CHUNK_KEYS:
                raise _corrupt(path, f"array '{name}' does not use the default chunk keys")

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        signature: Mapping[str, Any],
        grid_shape: Sequence[int],
        embedding_shape: Sequence[int],
        overwrite: bool = False,
    ) -> EmbeddingStore:
        """Create an empty store.

        Parameters
        ----------
        path : str or Path
            Folder to create (conventionally ending in ``.zarr``).
        signature : dict
            JSON-serialisable description of everything the embeddings depend on.
        grid_shape : (n_slices, n_ty, n_tx)
        embedding_shape : (C, h, w)
            Shape of one tile's embedding.
        overwrite : bool
            Replace an existing TileSAM store at `path` (never any other folder).
        """
        path = Path(path)
        sig = normalise_signature(signature)
        grid = _positive_ints(grid_shape, 3, "grid_shape (n_slices, n_ty, n_tx)")
        emb = _positive_ints(embedding_shape, 3, "embedding_shape (C, h, w)")
        if path.exists():
            if not overwrite:
                raise TileSAMError(
                    f"'{path}' already exists. Open it with EmbeddingStore.open, choose another "
                    "cache path, or pass overwrite=True to replace it."
                )
            _remove_store(path)
        head = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "grid_shape": list(grid),
            "embedding_shape": list(emb),
            "embedding_dtype": "float16",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            group = new_group(path, grid, emb)
            # Attributes last: a folder without them is not (yet) a store, so an interrupted
            # create is reported as "not a TileSAM store" rather than opened half-made.
            group.attrs.update({"tilesam": head, "signature": sig})
        except OSError as err:  # a full disk, no permission: nothing half-made stays behind
            shutil.rmtree(path, ignore_errors=True)
            raise TileSAMError(
                f"Could not create the embedding cache '{path}': {err.strerror or err}. Free "
                "space on that disk, or choose a cache path on another disk that you can write."
            ) from err
        return cls(path, group, "r+")

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        signature: Mapping[str, Any] | None = None,
        mode: str = "r+",
    ) -> EmbeddingStore:
        """Open an existing store; check its signature when one is given.

        Parameters
        ----------
        mode : {"r+", "r"}
            ``"r"`` opens read-only (e.g. for ``tilesam info``).

        Raises
        ------
        TileSAMError
            Missing path, a folder that is not a TileSAM store, a store written by a newer
            format, or a signature that differs (the message lists the fields).
        """
        if mode not in ("r", "r+"):
            raise TileSAMError(f"mode must be 'r' or 'r+', got {mode!r}.")
        path = Path(path)
        if not path.exists():
            raise TileSAMError(
                f"No embedding cache at '{path}'. Create it with EmbeddingStore.create or "
                "EmbeddingStore.open_or_create (or run the precompute step)."
            )
        head = read_header(path)
        if head is None:
            raise TileSAMError(
                f"'{path}' is not a TileSAM embedding cache. Point the cache path at a new "
                "folder (TileSAM creates it) or at an existing TileSAM cache."
            )
        version = head.get("format_version")
        if version != FORMAT_VERSION:
            raise TileSAMError(
                f"Embedding cache '{path}' has format version {version}; this TileSAM reads "
                f"version {FORMAT_VERSION}. Recompute it (overwrite=True) or use the TileSAM "
                "version that wrote it."
            )
        store = cls(path, zarr.open_group(str(path), mode=mode), mode)
        if signature is not None:
            store.check_signature(signature)
        return store

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        *,
        signature: Mapping[str, Any],
        grid_shape: Sequence[int],
        embedding_shape: Sequence[int],
        overwrite: bool = False,
    ) -> EmbeddingStore:
        """Open the store at `path` if it matches, else create it.

        A store with another signature or shape raises `TileSAMError`, unless `overwrite`
        is set, in which case it is replaced. Finished tiles of a matching store are kept,
        so an interrupted run resumes with `missing_tiles`.
        """
        path = Path(path)
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            # A missing or empty folder (e.g. made with mkdir) becomes a new store.
            return cls.create(
                path,
                signature=signature,
                grid_shape=grid_shape,
                embedding_shape=embedding_shape,
                overwrite=path.exists(),
            )
        try:
            store = cls.open(path, signature=signature)
            grid = _positive_ints(grid_shape, 3, "grid_shape")
            emb = _positive_ints(embedding_shape, 3, "embedding_shape")
            if (store.grid_shape, store.embedding_shape) != (grid, emb):
                raise TileSAMError(
                    f"Embedding cache '{path}' has grid {store.grid_shape} and embeddings "
                    f"{store.embedding_shape}, not {grid} and {emb}. Use another cache path, "
                    "or overwrite=True to recompute it."
                )
            return store
        except TileSAMError:
            if not overwrite:
                raise
        return cls.create(
            path,
            signature=signature,
            grid_shape=grid_shape,
            embedding_shape=embedding_shape,
            overwrite=True,
        )

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

    def write_tile(
        self, z: int, ty: int, tx: int, embedding: np.ndarray, meta: Mapping[str, Sequence[int]]
    ) -> None:
        """Store one tile's embedding and metadata, then mark it done.

        Parameters
        ----------
        embedding : numpy.ndarray, shape (C, h, w)
            Stored as float16.
        meta : dict
            ``{"tile_shape": (h, w), "input_shape": (h, w)}``: the tile's size before
            padding and its size after resizing to the model input.
        """
        self._check_writable()
        self._check_index(z, ty, tx)
        emb = np.asarray(embedding)
        if emb.shape != self.embedding_shape:
            raise TileSAMError(
                f"Embedding for tile {(z, ty, tx)} has shape {emb.shape}; this cache holds "
                f"{self.embedding_shape}. Was the cache made for another model?"
            )
        with np.errstate(over="ignore"):  # overflow is reported just below
            emb16 = emb.astype(np.float16)
        if not np.isfinite(emb16).all():
            raise TileSAMError(
                f"Embedding for tile {(z, ty, tx)} has NaN/inf values (or values beyond "
                "float16's range, 65504); not stored. Check the input normalisation."
            )
        values = _check_meta(meta)
        try:
            # Order matters: data first, the done marker last (see the module docstring).
            self._emb[z, ty, tx] = emb16
            for name, value in values.items():
                self._meta[name][z, ty, tx] = value
            self._done[z, ty, tx] = True
            self._meta_seen[(z, ty, tx)] = values
        except OSError as err:  # a full disk, a lost network share, no permission
            raise TileSAMError(
                f"Could not write tile {(z, ty, tx)} into the cache {self.path}: "
                f"{err.strerror or err}. Free space on that disk (or choose a cache on another "
                "disk) and run the same command again: the tiles already stored are kept."
            ) from err

    def read_tile(self, z: int, ty: int, tx: int) -> np.ndarray:
        """One tile's embedding as stored, ``(C, h, w)`` float16 (converting to float32 is
        the caller's: torch does it several times faster than numpy).

        Raises
        ------
        TileSAMError
            If the tile is not done yet.
        """
        self._require_done(z, ty, tx)
        try:
            return self._emb[z, ty, tx]
        except Exception as exc:  # noqa: BLE001 - codec errors mean a damaged chunk
            raise TileSAMError(
                f"Tile {(z, ty, tx)} of embedding cache '{self.path}' is damaged ({exc}). "
                "Call store.discard_tile(z, ty, tx) and recompute it, or overwrite the cache."
            ) from exc

    def read_meta(self, z: int, ty: int, tx: int) -> dict[str, tuple[int, int]]:
        """The tile's metadata as written: ``{"tile_shape": (h, w), "input_shape": (h, w)}``."""
        self._require_done(z, ty, tx)
        key = (z, ty, tx)
        if key not in self._meta_seen:
            self._meta_seen[key] = {
                name: tuple(int(v) for v in arr[key]) for name, arr in self._meta.items()
            }
        return dict(self._meta_seen[key])

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
        self._meta_seen.pop((z, ty, tx), None)

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
            "format_version": self._header.get("format_version"),
            "created": self._header.get("created"),
            "signature": self.signature,
            "grid_shape": self.grid_shape,
            "embedding_shape": self.embedding_shape,
            "embedding_dtype": self._header.get("embedding_dtype", "float16"),
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
    def _require_done(self, z: int, ty: int, tx: int) -> None:
        if not self.is_done(z, ty, tx):
            raise TileSAMError(
                f"Tile {(z, ty, tx)} has no embedding yet in cache '{self.path}' "
                f"({self.n_done}/{self.n_tiles} tiles done). Compute it first with Session.embed() "
                "or `tilesam embed` (both resume where they stopped)."
            )

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
def _remove_store(path: Path) -> None:
    # Refuse to delete anything that is not ours: a mistyped cache path must never wipe
    # the user's data.
    if path.is_dir() and (not any(path.iterdir()) or read_header(path) is not None):
        shutil.rmtree(path)
        return
    raise TileSAMError(
        f"'{path}' exists and is not a TileSAM embedding cache; refusing to overwrite it. "
        "Choose another cache path."
    )


def _positive_ints(values: Sequence[int], n: int, what: str) -> tuple[int, ...]:
    out = tuple(values)
    if len(out) != n or not all(isinstance(v, int | np.integer) and v > 0 for v in out):
        raise TileSAMError(f"{what} must be {n} positive integers, got {tuple(values)}.")
    return tuple(int(v) for v in out)


def _check_meta(meta: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int]]:
    if not isinstance(meta, Mapping) or set(meta) != set(META_FIELDS):
        got = sorted(meta) if isinstance(meta, Mapping) else type(meta).__name__
        raise TileSAMError(f"Tile meta must have exactly the keys {list(META_FIELDS)}, got {got}.")
    return {
        name: _positive_ints(meta[name], 2, f"meta['{name}'] (h, w)")  # type: ignore[misc]
        for name in META_FIELDS
    }


def _corrupt(path: Path, what: str) -> TileSAMError:
    return TileSAMError(
        f"Embedding cache '{path}' is damaged: {what}. Delete the folder or recompute it "
        "with overwrite=True."
    )
