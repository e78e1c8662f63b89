"""The header of an embedding store: the ``tilesam`` attributes of its ``zarr.json`` that
say what it holds (format, grid and embedding shapes, encoding, store id), made for a new
store and checked against their seal (:func:`~tilesam.cache.store_layout.header_checksum`)
when a store opens.

>>> head = new_header({"model": "tiny"}, (1, 2, 2), (8, 4, 4), (), "float16")
>>> header = checked_header(Path("cache.zarr"), {"tilesam": head, "signature": {"model": "tiny"}})
>>> header.grid_shape, header.format_version, header.verified, header.encoding
((1, 2, 2), 2, True, 'float16')
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.cache.codec import ENCODINGS, Q8_FORMAT
from tilesam.cache.high_res import HIGH_RES_FORMAT
from tilesam.cache.store_layout import FORMAT_VERSION, KIND, header_checksum
from tilesam.errors import TileSAMError


@dataclass(frozen=True)
class StoreHeader:
    """A store's header as checked on opening.

    Attributes
    ----------
    fields : dict
        The ``tilesam`` attributes as stored.
    signature : dict
        What the store was computed for (:mod:`tilesam.cache.signature`), as stored.
    """

    fields: dict[str, Any]
    signature: Any
    grid_shape: tuple[int, ...]
    embedding_shape: tuple[int, ...]
    format_version: int
    store_id: str
    #: How the embeddings are stored: "float16" (formats 1-3) or "q8" (format 4).
    encoding: str

    @property
    def verified(self) -> bool:
        """Whether tiles carry checksums (format 2); format 1 stores are read unverified."""
        return self.format_version >= 2


def new_header(
    signature: dict[str, Any],
    grid: tuple[int, ...],
    emb: tuple[int, ...],
    high_res: tuple[tuple[int, ...], ...],
    encoding: str,
) -> dict[str, Any]:
    """The header of a new store, sealed with `signature` (already normalised)."""
    head: dict[str, Any] = {
        "kind": KIND,
        "format_version": HIGH_RES_FORMAT if high_res else FORMAT_VERSION,
        "grid_shape": list(grid),
        "embedding_shape": list(emb),
        "embedding_dtype": "float16",
        **_encoding_fields(encoding),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "store_id": uuid.uuid4().hex,
    }
    if high_res:
        head["high_res_shapes"] = [list(shape) for shape in high_res]
    head["checksum"] = header_checksum(head, signature)
    return head


def checked_header(path: Path, attrs: Mapping[str, Any]) -> StoreHeader:
    """The header in the group attributes `attrs` of the store at `path`; a
    :func:`corrupt` error where it is incomplete or no longer matches its seal."""
    head = attrs.get("tilesam")
    signature = attrs.get("signature", {})
    try:
        grid = positive_ints(head["grid_shape"], 3, "grid")
        emb = positive_ints(head["embedding_shape"], 3, "embedding")
        version = int(head["format_version"])
    except (KeyError, TypeError, ValueError, TileSAMError) as exc:
        raise corrupt(path, f"its header in zarr.json is incomplete ({exc})") from exc
    store_id = str(head.get("store_id", ""))
    if version >= 2 and (
        not isinstance(signature, dict)
        or not store_id
        or head.get("checksum") != header_checksum(head, signature)
    ):
        raise corrupt(
            path,
            "its settings in zarr.json (the signature or the header) were changed after "
            "it was made: they no longer match their checksum, so the embeddings may not "
            "belong to them",
        )
    encoding = str(head.get("embedding_encoding", "float16"))
    return StoreHeader(head, signature, grid, emb, version, store_id, encoding)


def check_encoding(encoding: str, high_res: tuple) -> None:
    """Refuse an unknown `encoding`, and "q8" for a store that keeps `high_res` maps."""
    if encoding not in ENCODINGS:
        raise TileSAMError(f"encoding must be one of {ENCODINGS}, got {encoding!r}.")
    if encoding == "q8" and high_res:
        raise TileSAMError(
            "encoding='q8' is for SAM's models; a SAM 2 model's cache keeps float16 "
            "embeddings and maps (leave encoding at 'float16')."
        )


def _encoding_fields(encoding: str) -> dict[str, Any]:
    """The header fields of a q8 store (format 4); none for float16."""
    if encoding != "q8":
        return {}
    return {"format_version": Q8_FORMAT, "embedding_dtype": "uint8", "embedding_encoding": "q8"}


def positive_ints(values: Sequence[int], n: int, what: str) -> tuple[int, ...]:
    """`values` as `n` positive ints; a `TileSAMError` naming `what` otherwise."""
    out = tuple(values)
    if len(out) != n or not all(isinstance(v, int | np.integer) and v > 0 for v in out):
        raise TileSAMError(f"{what} must be {n} positive integers, got {tuple(values)}.")
    return tuple(int(v) for v in out)


def corrupt(path: Path, what: str) -> TileSAMError:
    """The error for a store whose header or arrays are damaged (`what`)."""
    return TileSAMError(
        f"Embedding cache '{path}' is damaged: {what}. Recompute it with overwrite=True "
        f"(`tilesam embed IMAGE --cache {path} --overwrite`), or delete the folder."
    )
