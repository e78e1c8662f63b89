"""How an embedding store lies on disk: its zarr arrays, their chunks and codecs, the
header that says a folder is a TileSAM store, and the checksum that seals that header (see
:mod:`tilesam.cache.store`).

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

Format versions
---------------
1. (before issue 23) embeddings, tile_shape, input_shape, done. Still opened and written;
   its tiles carry no checksums and its header no seal, so they are read unverified.
2. adds ``checksum`` (per tile: a digest of its embedding and one of its metadata, see
   :mod:`tilesam.cache.tile_digest`), a ``store_id`` that the digests include, and the
   header's ``checksum`` over the header and the signature, checked on open.
3. (SAM 2) format 2 plus the high-resolution feature maps of each tile and their digests
   (:mod:`tilesam.cache.high_res`), the header's ``high_res_shapes`` naming them. Only
   stores made for a SAM 2 model are written in it, so that SAM's stay readable by the
   TileSAM versions that read format 2.
4. format 2 with the embeddings quantised to 8 bits per value and an ``embedding_scale``
   array, (offset, step) per channel per tile (:mod:`tilesam.cache.codec`); the header's
   ``embedding_encoding`` is ``"q8"``. Written only when asked for (``encoding="q8"``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from tilesam.errors import TileSAMError

FORMAT_VERSION = 2
#: Versions this TileSAM opens: 1 (no checksums: read unverified), 2, 3 (SAM 2's) and 4
#: (quantised embeddings).
READABLE_VERSIONS = (1, 2, 3, 4)
KIND = "tilesam.embedding_store"
#: Per-tile metadata fields `write_tile` expects, each a pair of positive ints (h, w).
META_FIELDS = ("tile_shape", "input_shape")
#: The arrays of a store, as `create` makes them (format 1 lacks ``checksum``).
ARRAYS = ("embeddings", *META_FIELDS, "checksum", "done")
#: zarr v3's default chunk keys, "c/<z>/<ty>/<tx>": a tile's ``done`` chunk is found by a stat.
CHUNK_KEYS = {"name": "default", "configuration": {"separator": "/"}}
#: The folder (a zarr group without members) where embedders claim tiles (:mod:`.claims`).
CLAIMS = "claims"


def embedding_codecs() -> list:
    """The codecs of new stores' embedding chunks: LZ4 on bit-shuffled float16, then a
    CRC32C.

    LZ4 keeps 0.89 of the raw size and decodes a tile in 0.6 ms, where zstd (stores made
    before 2026-11-28 evening, which keep it: zarr reads each array's codecs from its
    metadata) kept 0.92 in 1.3 ms; a tile is read at every click on a new tile. The
    checksum turns a damaged chunk into a clear error instead of noise.
    """
    return [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"), Crc32cCodec()]


def read_header(path: Path) -> dict[str, Any] | None:
    """The store's "tilesam" attributes, or None if `path` is not a TileSAM store."""
    attrs = read_attributes(path)
    head = None if attrs is None else attrs.get("tilesam")
    return head if isinstance(head, dict) and head.get("kind") == KIND else None


def read_attributes(path: Path) -> dict[str, Any] | None:
    """The attributes of the zarr group at `path`; None where there is none (or it is
    unreadable)."""
    if not (path / "zarr.json").is_file():
        return None
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - any unreadable metadata means "not a store"
        return None


def header_checksum(head: Mapping[str, Any], signature: Mapping[str, Any]) -> str:
    """The seal of a format-2 header: SHA-256 of the header (without its own ``checksum``)
    and the signature, as canonical JSON. An edited ``zarr.json`` (a normalisation range,
    the grid, the store id) no longer matches it."""
    sealed = {"tilesam": {k: v for k, v in head.items() if k != "checksum"}}
    sealed["signature"] = dict(signature)
    text = json.dumps(sealed, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def is_unfinished_creation(path: Path) -> bool:
    """Whether `path` is what a TileSAM before format 2 left when killed while creating a
    store: a zarr group without attributes whose members are only (some of) the store's
    arrays, without a single chunk. Such a folder holds nothing and is safely replaced;
    anything else (a file, a chunk, an attribute, another name) is not recognised."""
    if not path.is_dir() or read_attributes(path) != {}:
        return False
    try:
        group = json.loads((path / "zarr.json").read_text())
        if group.get("node_type") != "group":
            return False
        for entry in path.iterdir():
            if entry.name == "zarr.json" or _partial(entry):
                continue
            if entry.name not in ARRAYS or not entry.is_dir():
                return False
            inside = [p for p in entry.iterdir() if not _partial(p)]
            if [p.name for p in inside] != ["zarr.json"]:
                return False
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _partial(entry: Path) -> bool:
    """A file zarr was writing when the process died (``<name>.<hex>.partial``)."""
    return entry.is_file() and entry.name.endswith(".partial")


def new_group(
    path: Path,
    grid: tuple[int, ...],
    emb: tuple[int, ...],
    dtype: str = "float16",
    codecs: list | None = None,
) -> zarr.Group:
    """The store's zarr group and arrays, without its attributes; the embeddings of
    `dtype` compressed with `codecs` (default: :func:`embedding_codecs`)."""
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    tile = (1, 1, 1)
    group.create_array(
        "embeddings",
        shape=(*grid, *emb),
        chunks=(*tile, *emb),
        dtype=dtype,
        fill_value=0,
        compressors=embedding_codecs() if codecs is None else codecs,
        chunk_key_encoding=CHUNK_KEYS,
    )
    for name in META_FIELDS:
        group.create_array(
            name, shape=(*grid, 2), chunks=(*tile, 2), dtype="int32", fill_value=0,
            compressors=None, chunk_key_encoding=CHUNK_KEYS,
        )  # fmt: skip
    # Two uint64 per tile, raw: the digests of its embedding and of its metadata.
    group.create_array(
        "checksum", shape=(*grid, 2), chunks=(*tile, 2), dtype="uint64", fill_value=0,
        compressors=None, chunk_key_encoding=CHUNK_KEYS,
    )  # fmt: skip
    group.create_array(
        "done", shape=grid, chunks=tile, dtype="bool", fill_value=False,
        compressors=None, chunk_key_encoding=CHUNK_KEYS,
    )  # fmt: skip
    group.create_group(CLAIMS)
    return group


def chunk_file(store: Path, array: str, tile: tuple[int, int, int], *trailing: int) -> Path:
    """The file of `tile`'s chunk of `array` (``trailing`` chunk indices for the arrays
    with more dimensions than the grid: 0 for the per-tile pairs, ``0, 0, 0`` for
    embeddings)."""
    z, ty, tx = tile
    return store.joinpath(array, "c", str(z), str(ty), str(tx), *map(str, trailing))


def as_float16(values: Any, shape: Sequence[int], what: str) -> np.ndarray:
    """`values` as the float16 a store keeps, checked: the store's `shape`, and finite in
    float16; else a :class:`TileSAMError` naming `what` (a tile's embedding or map).

    >>> as_float16(np.ones((2, 3)), (2, 3), "Embedding for tile (0, 0, 0)").dtype
    dtype('float16')
    """
    values = np.asarray(values)
    if values.shape != tuple(shape):
        raise TileSAMError(
            f"{what} has shape {values.shape}; this cache holds {tuple(shape)}. Was the "
            "cache made for another model?"
        )
    with np.errstate(over="ignore"):  # overflow is reported just below
        half = values.astype(np.float16)
    if not np.isfinite(half).all():
        raise TileSAMError(
            f"{what} has NaN/inf values (or values beyond float16's range, 65504); not "
            "stored. Check the input normalisation."
        )
    return half
