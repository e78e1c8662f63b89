"""`EmbeddingStore`: tile embeddings in a zarr v3 group on disk, resumable, signed and
checksummed.

Layout of one store (one per image x model x preprocessing)::

    cache.zarr/
      zarr.json      group attributes: {"tilesam": {format_version, grid/embedding shape,
                     store_id, checksum (the seal of this header and the signature), ...},
                     "signature": {caller's dict: model, weights sha256, tile size, halo,
                     normalisation, image shape/dtype, content signature, ...}}
      embeddings/    float16 (n_slices, n_ty, n_tx, C, h, w), one chunk per tile, blosc
                     (format 4, encoding="q8": uint8 codes + embedding_scale/, see codec)
      tile_shape/    int32 (n_slices, n_ty, n_tx, 2): tile size before padding, one chunk/tile
      input_shape/   int32 (n_slices, n_ty, n_tx, 2): size after resizing, one chunk/tile
      checksum/      uint64 (n_slices, n_ty, n_tx, 2): digests of each tile's embedding and
                     metadata (:mod:`tilesam.cache.tile_digest`), one chunk/tile
      done/          bool (n_slices, n_ty, n_tx), chunk (1, 1, 1): one object per tile
      claims/        which embedder computes which tile now (:mod:`tilesam.cache.claims`)
      decoder/       float32, one chunk: the model's prompt encoder and mask decoder weights
                     (optional; see `write_decoder`), so that clicks need no torch
      high_res_*/    float16, one chunk per tile: a SAM 2 model's high-resolution feature
                     maps and their digests (format 3 only, :mod:`tilesam.cache.high_res`)

Concurrency and crash safety. A store is built in a hidden sibling folder and renamed
into place (:mod:`tilesam.cache.creation`): a store at its path is always complete, and two
processes creating one share the first one's. Every array is chunked one tile per chunk,
so a writer of tile (z, ty, tx) only ever creates the objects ``<array>/c/z/ty/tx``:
writers of different tiles (threads, processes, dask workers) never read-modify-write a
shared chunk, and nothing shared (group or array metadata) is written after `create`.
Embedders claim a tile before computing it, so that concurrent runs share the work. A
tile's ``done`` chunk is written last, after its embedding, metadata and checksum chunks
have been stored, so a process killed mid-tile leaves the tile "not done" (it is
recomputed on resume) and never "done" with partial data. zarr's LocalStore also writes
each chunk to a temporary file and renames it into place, so a chunk is either absent or
whole. ``done`` chunks are only ever written with ``True`` and removed by `discard_tile`,
so a ``done`` object exists exactly for the finished tiles: `is_done` is one ``stat`` and
`missing_tiles` lists the ``done/c`` directories instead of reading one chunk per tile.

Integrity. Opening checks the header's seal (an edited signature is refused as damaged);
every `read_tile` and `read_meta` checks the tile's digests, so a deleted, damaged or
swapped chunk is one `TileSAMError` naming the tile and the fix (`verify` checks them all:
``tilesam check``). Stores of format 1 (before checksums) open and work unverified.

Create the store once (in the driver) before handing tiles to workers; workers then
`EmbeddingStore.open` it and call `write_tile`. Signatures (what a store was computed for)
are normalised and compared in :mod:`tilesam.cache.signature`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from tilesam.cache import creation, in_use
from tilesam.cache.claims import TileClaims
from tilesam.cache.codec import ENCODINGS, Q8_FORMAT, QuantisedTiles, create_scale_array, q8_codecs
from tilesam.cache.decoder_weights import read_decoder, write_decoder
from tilesam.cache.done_marks import done_mark, finished_tiles
from tilesam.cache.high_res import (
    HIGH_RES_FORMAT,
    check_shapes,
    checked_maps,
    create_arrays,
    open_arrays,
)
from tilesam.cache.signature import check_signature, content_signature, normalise_signature
from tilesam.cache.store_layout import (
    CHUNK_KEYS,
    CLAIMS,
    FORMAT_VERSION,
    KIND,
    META_FIELDS,
    READABLE_VERSIONS,
    as_float16,
    chunk_file,
    header_checksum,
    new_group,
    read_header,
)
from tilesam.cache.tile_digest import Damaged, embedding_digest, meta_digest, read_raw
from tilesam.cache.verify import StoreCheck, verify_store
from tilesam.errors import TileSAMError

# Over 400 lines, and kept whole: one concept, the life of a store (create, open, check,
# write, read, discard); its layout, creation, claims, digests, done marks, verification
# and decoder weights live beside it.
__all__ = ["FORMAT_VERSION", "META_FIELDS", "EmbeddingStore", "StoreCheck", "content_signature"]


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
    >>> store.verify().ok
    True
    """

    def __init__(self, path: Path, group: zarr.Group, mode: str) -> None:
        self.path = path
        self.mode = mode
        self._group = group
        attrs = dict(group.attrs)
        head = attrs.get("tilesam")
        self.signature: dict[str, Any] = attrs.get("signature", {})
        try:
            self.grid_shape: tuple[int, ...] = _positive_ints(head["grid_shape"], 3, "grid")
            self.embedding_shape: tuple[int, ...] = _positive_ints(
                head["embedding_shape"], 3, "embedding"
            )
            self.format_version: int = int(head["format_version"])
        except (KeyError, TypeError, ValueError, TileSAMError) as exc:
            raise _corrupt(path, f"its header in zarr.json is incomplete ({exc})") from exc
        self._header = head
        #: Whether tiles carry checksums (format 2); format 1 stores are read unverified.
        self.verified = self.format_version >= 2
        self._id = str(head.get("store_id", ""))
        if self.verified and (
            not isinstance(self.signature, dict)
            or not self._id
            or head.get("checksum") != header_checksum(head, self.signature)
        ):
            raise _corrupt(
                path,
                "its settings in zarr.json (the signature or the header) were changed after "
                "it was made: they no longer match their checksum, so the embeddings may not "
                "belong to them",
            )
        names = ("embeddings", "done", *META_FIELDS) + (("checksum",) if self.verified else ())
        try:
            arrays = {name: group[name] for name in names}
        except KeyError as exc:
            raise _corrupt(path, f"array {exc} is missing") from exc
        except Exception as exc:  # noqa: BLE001 - zarr raises many types for bad metadata
            raise _corrupt(path, f"an array's metadata cannot be read ({exc})") from exc
        self._emb, self._done = arrays["embeddings"], arrays["done"]
        self._meta = {name: arrays[name] for name in META_FIELDS}
        self._checksum = arrays.get("checksum")
        #: How the embeddings are stored: "float16" (formats 1-3) or "q8" (format 4).
        self.encoding: str = str(head.get("embedding_encoding", "float16"))
        self._q8: QuantisedTiles | None = None
        if self.encoding == "q8" and self.format_version == Q8_FORMAT:
            try:
                self._q8 = QuantisedTiles(path, group, self._id)
            except (KeyError, ValueError) as exc:
                raise _corrupt(path, f"its quantised embeddings are unreadable ({exc})") from exc
        elif self.encoding != "float16" or self.format_version == Q8_FORMAT:
            raise _corrupt(path, f"format {self.format_version} with encoding {self.encoding!r}")
        expected = {
            "embeddings": (*self.grid_shape, *self.embedding_shape),
            "done": self.grid_shape,
            **{name: (*self.grid_shape, 2) for name in (*META_FIELDS, "checksum")},
        }
        for name, array in arrays.items():
            if tuple(array.shape) != expected[name]:
                shape = expected[name]
                raise _corrupt(path, f"array '{name}' has shape {array.shape}, not {shape}")
            if array.metadata.chunk_key_encoding.to_dict() != CHUNK_KEYS:
                raise _corrupt(path, f"array '{name}' does not use the default chunk keys")
        # The small per-tile chunks are read as files (10 us, not a 1 ms zarr read) where
        # they are stored raw, as stores are made.
        self._raw = {
            name: _is_raw(arrays[name], dtype)
            for name, dtype in [*((n, "int32") for n in META_FIELDS), ("checksum", "uint64")]
            if name in arrays
        }
        #: The shapes of each tile's high-resolution feature maps (SAM 2; empty for SAM).
        try:
            # Format 4 keeps no maps (SAM's models only), like format 2.
            plain = self._q8 is not None and "high_res_shapes" not in head
            shown = {**head, "format_version": FORMAT_VERSION} if plain else head
            self.high_res_shapes, self._high_res = open_arrays(path, group, shown, self._id)
        except ValueError as exc:
            raise _corrupt(path, f"its high-resolution features are unreadable ({exc})") from exc
        self._claims: TileClaims | None = None
        in_use.use(self, path, create=mode == "r+")  # never replaced while open

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
        high_res_shapes: Sequence[Sequence[int]] = (),
        encoding: str = "float16",
    ) -> EmbeddingStore:
        """Create an empty store.

        The store is built in a hidden sibling folder and renamed into place, so a
        process killed meanwhile leaves nothing in the way of the next run. A missing or
        empty folder, or one that an older TileSAM left when killed while creating a
        store, is replaced. When another process creates the same store at the same time,
        the one that comes second opens the first one's (checking its signature).

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
        high_res_shapes : sequence of (C, h, w)
            The high-resolution feature maps each tile keeps besides its embedding (a SAM 2
            model's ``card.high_res_shapes``); such a store is format 3.
        encoding : {"float16", "q8"}
            How embeddings are stored: float16 (format 2), or 8-bit codes with a scale per
            channel (format 4, :mod:`tilesam.cache.codec`: 0.2-0.3x micro-sam's bytes per
            tile); "q8" is for SAM's models only (not with `high_res_shapes`).
        """
        path = Path(path)
        high_res = check_shapes(high_res_shapes)
        _check_encoding(encoding, high_res)
        sig = normalise_signature(signature)
        grid = _positive_ints(grid_shape, 3, "grid_shape (n_slices, n_ty, n_tx)")
        emb = _positive_ints(embedding_shape, 3, "embedding_shape (C, h, w)")
        seen = creation.state(path)
        if seen == "other":
            if overwrite:
                raise _not_ours(path)
            raise _exists(path)
        if isinstance(seen, tuple) and not overwrite:
            raise _exists(path)
        head: dict[str, Any] = {
            "kind": KIND,
            "format_version": HIGH_RES_FORMAT if high_res else FORMAT_VERSION,
            "grid_shape": list(grid),
            "embedding_shape": list(emb),
            "embedding_dtype": "float16",
            **_encoding_header(encoding),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "store_id": uuid.uuid4().hex,
        }
        if high_res:
            head["high_res_shapes"] = [list(shape) for shape in high_res]
        head["checksum"] = header_checksum(head, sig)
        held = None
        try:
            with creation.staged(path) as tmp:
                if encoding == "q8":
                    group = new_group(tmp, grid, emb, "uint8", q8_codecs())
                    create_scale_array(group, grid, emb[0])
                else:
                    group = new_group(tmp, grid, emb)
                if high_res:
                    create_arrays(group, grid, high_res)
                group.attrs.update({"tilesam": head, "signature": sig})
                held = in_use.hold(tmp, create=True)  # ours from before it is in place
                placed = creation.place(tmp, path, seen)
            if placed == "placed":
                return cls(path, zarr.open_group(str(path), mode="r+"), "r+")
        except FileExistsError:
            raise _not_ours(path) from None
        except OSError as err:  # a full disk, no permission: nothing half-made stays behind
            raise TileSAMError(
                f"Could not create the embedding cache '{path}': {err.strerror or err}. Free "
                "space on that disk, or choose a cache path on another disk that you can write."
            ) from err
        finally:
            in_use.release(held)
        if placed == "theirs":  # another process made it first: share it
            return cls._opened_as(path, sig, grid, emb, high_res)
        try:  # "in use": never replaced under another process; shared if it is the same
            return cls._opened_as(path, sig, grid, emb, high_res)
        except TileSAMError as err:
            raise TileSAMError(
                f"Embedding cache '{path}' is open in another process (a session, `tilesam "
                "embed`, a dask worker), so it is not replaced under it. Close that first, "
                f"or choose another cache path. ({err})"
            ) from None

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
            format, a damaged header, or a signature that differs (the message lists the
            fields).
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
            if creation.state(path) == "unfinished":
                raise TileSAMError(
                    f"'{path}' is not a TileSAM embedding cache yet: an empty zarr group, as "
                    "an older TileSAM left a cache whose creation was interrupted; it holds "
                    "no embeddings. Run the same command with --overwrite (overwrite=True in "
                    "Python) to replace it, or delete it."
                )
            raise TileSAMError(
                f"'{path}' is not a TileSAM embedding cache. Point the cache path at a new "
                "folder (TileSAM creates it) or at an existing TileSAM cache."
            )
        version = head.get("format_version")
        if version not in READABLE_VERSIONS:
            raise TileSAMError(
                f"Embedding cache '{path}' has format version {version}; this TileSAM reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}. Recompute it "
                "(overwrite=True) or use the TileSAM version that wrote it."
            )
        try:
            group = zarr.open_group(str(path), mode=mode)
        except Exception as exc:  # noqa: BLE001 - unreadable metadata
            raise _corrupt(path, f"its zarr.json cannot be read ({exc})") from exc
        store = cls(path, group, mode)
        if signature is not None:
            store.check_signature(signature)
        return store

    @classmethod
    def open_existing(
        cls, path: str | os.PathLike[str], *, mode: str = "r"
    ) -> EmbeddingStore | None:
        """The store at `path`, or None where there is none yet: a missing or empty folder,
        or one whose creation an older TileSAM left unfinished (the next `open_or_create`
        replaces it). Anything else that is not a store raises `TileSAMError`."""
        if creation.state(Path(path)) in ("missing", "empty", "unfinished"):
            return None
        return cls.open(path, mode=mode)

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        *,
        signature: Mapping[str, Any],
        grid_shape: Sequence[int],
        embedding_shape: Sequence[int],
        overwrite: bool = False,
        high_res_shapes: Sequence[Sequence[int]] = (),
        encoding: str = "float16",
    ) -> EmbeddingStore:
        """Open the store at `path` if it matches, else create it (with `encoding`; a
        matching store is kept whatever its encoding).

        A store with another signature or shape raises `TileSAMError`, unless `overwrite`
        is set, in which case it is replaced. Finished tiles of a matching store are kept,
        so an interrupted run resumes with `missing_tiles`.
        """
        path = Path(path)
        kw = {"signature": signature, "grid_shape": grid_shape, "embedding_shape": embedding_shape}
        kw["high_res_shapes"] = high_res_shapes
        kw["encoding"] = encoding
        if creation.state(path) in ("missing", "empty", "unfinished"):
            # Nothing to keep (e.g. a folder made with mkdir): a new store.
            return cls.create(path, **kw)
        try:
            sig = normalise_signature(signature)
            grid = _positive_ints(grid_shape, 3, "grid_shape")
            emb = _positive_ints(embedding_shape, 3, "embedding_shape")
            return cls._opened_as(path, sig, grid, emb, check_shapes(high_res_shapes))
        except TileSAMError:
            if not overwrite:
                raise
        return cls.create(path, **kw, overwrite=True)

    @classmethod
    def _opened_as(
        cls,
        path: Path,
        sig: dict[str, Any],
        grid: tuple[int, ...],
        emb: tuple[int, ...],
        high_res: tuple[tuple[int, ...], ...] = (),
    ) -> EmbeddingStore:
        store = cls.open(path, signature=sig)
        found = (store.grid_shape, store.embedding_shape, store.high_res_shapes)
        if found != (grid, emb, high_res):
            raise TileSAMError(
                f"Embedding cache '{path}' has grid {store.grid_shape}, embeddings "
                f"{store.embedding_shape} and high-resolution maps {list(store.high_res_shapes)}, "
                f"not {grid}, {emb} and {list(high_res)}. Use another cache path, or "
                "overwrite=True to recompute it."
            )
        return store

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

    @property
    def claims(self) -> TileClaims:
        """This store's tile claims (:mod:`tilesam.cache.claims`), for embedders."""
        if self._claims is None:
            self._claims = TileClaims(self.path / CLAIMS)
        return self._claims

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
        maps = checked_maps(self._high_res, tile, high_res)
        try:
            # Order matters: data, then its checksums, the done marker last (see the
            # module docstring).
            if self._q8 is None:
                self._emb[tile] = emb16
            for name, value in values.items():
                self._meta[name][tile] = value
            if self._high_res is not None:
                self._high_res.write(tile, maps)
            if self._q8 is not None:
                digests = (self._q8.write(tile, emb), meta_digest(self._id, tile, values))
                self._checksum[tile] = np.array(digests, dtype=np.uint64)
            elif self._checksum is not None:
                digests = (
                    embedding_digest(self._id, tile, emb16),
                    meta_digest(self._id, tile, values),
                )
                self._checksum[tile] = np.array(digests, dtype=np.uint64)
            self._done[tile] = True
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
            return self._checked_embedding(tile)
        except Damaged as why:
            raise self._damaged(tile, str(why)) from None

    def read_high_res(self, z: int, ty: int, tx: int) -> tuple[np.ndarray, ...]:
        """One tile's high-resolution feature maps as stored (float16, ``high_res_shapes``),
        their checksums checked; ``()`` for a store without them (SAM's models)."""
        tile = self._require_done(z, ty, tx)
        if self._high_res is None:
            return ()
        try:
            return self._high_res.read(tile)
        except Damaged as why:
            raise self._damaged(tile, str(why)) from None

    def read_meta(self, z: int, ty: int, tx: int) -> dict[str, tuple[int, int]]:
        """The tile's metadata as written, its checksum checked: ``{"tile_shape": (h, w),
        "input_shape": (h, w)}``."""
        tile = self._require_done(z, ty, tx)
        try:
            return self._checked_meta(tile)
        except Damaged as why:
            raise self._damaged(tile, str(why)) from None

    def tile_problem(self, z: int, ty: int, tx: int) -> str | None:
        """What is wrong with a finished tile (its chunks, metadata, checksums), or None."""
        tile = (int(z), int(ty), int(tx))
        try:
            self._checked_meta(tile)
            self._checked_embedding(tile)
            if self._high_res is not None:
                self._high_res.read(tile)
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
    def _checked_embedding(self, tile: tuple[int, int, int]) -> np.ndarray:
        if self._q8 is not None:
            return self._q8.read(tile, int(self._digests(tile)[0]))
        file = chunk_file(self.path, "embeddings", tile, *([0] * len(self.embedding_shape)))
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

    def _checked_meta(self, tile: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
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

    def _digests(self, tile: tuple[int, int, int]) -> np.ndarray:
        return self._small("checksum", tile, "uint64")

    def _small(self, name: str, tile: tuple[int, int, int], dtype: str) -> np.ndarray:
        """A per-tile pair (metadata or digests), read as a file where stored raw."""
        if self._raw.get(name):
            return read_raw(chunk_file(self.path, name, tile, 0), _LE[dtype], 2, name)
        array = self._checksum if name == "checksum" else self._meta[name]
        try:
            return np.asarray(array[tile])
        except Exception as exc:  # noqa: BLE001 - codec errors mean a damaged chunk
            raise Damaged(f"its {name} chunk cannot be decoded ({exc})") from None

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
_LE = {"int32": "<i4", "uint64": "<u8"}


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


def _check_encoding(encoding: str, high_res: tuple) -> None:
    if encoding not in ENCODINGS:
        raise TileSAMError(f"encoding must be one of {ENCODINGS}, got {encoding!r}.")
    if encoding == "q8" and high_res:
        raise TileSAMError(
            "encoding='q8' is for SAM's models; a SAM 2 model's cache keeps float16 "
            "embeddings and maps (leave encoding at 'float16')."
        )


def _encoding_header(encoding: str) -> dict[str, Any]:
    """The header fields of a q8 store (format 4); none for float16."""
    if encoding != "q8":
        return {}
    return {"format_version": Q8_FORMAT, "embedding_dtype": "uint8", "embedding_encoding": "q8"}


def _exists(path: Path) -> TileSAMError:
    return TileSAMError(
        f"'{path}' already exists. Open it with EmbeddingStore.open, choose another "
        "cache path, or pass overwrite=True to replace it."
    )


def _not_ours(path: Path) -> TileSAMError:
    # A mistyped cache path must never wipe the user's data.
    return TileSAMError(
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
        f"Embedding cache '{path}' is damaged: {what}. Recompute it with overwrite=True "
        f"(`tilesam embed IMAGE --cache {path} --overwrite`), or delete the folder."
    )
