"""Opening an embedding store: creating a new one (built aside and renamed into place,
:mod:`tilesam.cache.creation`), opening one that exists (its format, header and, when
asked, its signature checked), or either as the store at a path allows.

These are the classmethods of :class:`~tilesam.cache.store.EmbeddingStore`, which inherits
them from `StoreOpening`; they construct the store with ``cls(path, group, mode)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zarr

from tilesam.cache import creation, in_use
from tilesam.cache.codec import create_scale_array, q8_codecs
from tilesam.cache.high_res import check_shapes, create_arrays
from tilesam.cache.signature import normalise_signature
from tilesam.cache.store_header import check_encoding, corrupt, new_header, positive_ints
from tilesam.cache.store_layout import READABLE_VERSIONS, new_group, read_header
from tilesam.errors import TileSAMError

if TYPE_CHECKING:
    from tilesam.cache.store import EmbeddingStore


class StoreOpening:
    """The ways to an :class:`~tilesam.cache.store.EmbeddingStore`: `create`, `open`,
    `open_existing` and `open_or_create`."""

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
        check_encoding(encoding, high_res)
        sig = normalise_signature(signature)
        grid = positive_ints(grid_shape, 3, "grid_shape (n_slices, n_ty, n_tx)")
        emb = positive_ints(embedding_shape, 3, "embedding_shape (C, h, w)")
        seen = creation.state(path)
        _check_replaceable(path, seen, overwrite)
        head = new_header(sig, grid, emb, high_res, encoding)
        held = None
        try:
            with creation.staged(path) as tmp:
                _build(tmp, head, sig, encoding, high_res)
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
        _check_readable(path)
        try:
            group = zarr.open_group(str(path), mode=mode)
        except Exception as exc:  # noqa: BLE001 - unreadable metadata
            raise corrupt(path, f"its zarr.json cannot be read ({exc})") from exc
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
            try:
                return cls.create(path, **kw)
            except TileSAMError:
                # Another process (a second `tilesam embed`, a dask worker) may have made
                # the store since the look above: then it is opened as any existing one.
                if not isinstance(creation.state(path), tuple):
                    raise
        try:
            sig = normalise_signature(signature)
            grid = positive_ints(grid_shape, 3, "grid_shape")
            emb = positive_ints(embedding_shape, 3, "embedding_shape")
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


def _check_readable(path: Path) -> None:
    """Refuse a `path` that holds no store, or a store of a format this TileSAM cannot read."""
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


def _build(
    folder: Path,
    head: dict[str, Any],
    signature: dict[str, Any],
    encoding: str,
    high_res: tuple[tuple[int, ...], ...],
) -> None:
    """Make a new store's arrays and attributes in `folder` (its staging folder)."""
    grid = tuple(head["grid_shape"])
    emb = tuple(head["embedding_shape"])
    if encoding == "q8":
        group = new_group(folder, grid, emb, "uint8", q8_codecs())
        create_scale_array(group, grid, emb[0])
    else:
        group = new_group(folder, grid, emb)
    if high_res:
        create_arrays(group, grid, high_res)
    group.attrs.update({"tilesam": head, "signature": signature})


def _check_replaceable(path: Path, seen: Any, overwrite: bool) -> None:
    """Refuse to create a store where something is (`seen`, a :func:`creation.state`)
    unless it is nothing to keep, or a store to `overwrite`."""
    if seen == "other":
        if overwrite:
            raise _not_ours(path)
        raise _exists(path)
    if isinstance(seen, tuple) and not overwrite:
        raise _exists(path)


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
