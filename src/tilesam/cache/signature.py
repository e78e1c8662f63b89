"""Signatures of embedding caches: what a store was computed for, and how a request differs.

A signature is the caller's JSON-serialisable description of everything the embeddings depend
on: model, weights hash, tile size, halo, normalisation, image shape and dtype, and the
:func:`content_signature` of the pixels. :func:`normalise_signature` turns it into plain JSON
values once, so that tuples and lists, numpy and python numbers compare equal to what was
stored; :func:`check_signature` compares field by field (nested dicts as dotted names) and
raises an error that names every differing field and the user's ways out.

Examples
--------
>>> stored = normalise_signature({"model": "tiny", "norm": {"mean": (0.5, 0.5)}})
>>> signature_diff(stored, {"model": "tiny", "norm": {"mean": [0.5, 0.4]}})
[('norm.mean', [0.5, 0.5], [0.5, 0.4])]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.cache.canvas import SQUARE_RESIZE
from tilesam.errors import TileSAMError
from tilesam.io.signature import content_signature

if TYPE_CHECKING:
    from tilesam.cache.tiling import TileGrid
    from tilesam.io import ImageSource
    from tilesam.models.card import ModelCard

__all__ = [
    "MISSING",
    "cache_signature",
    "check_signature",
    "content_signature",
    "normalise_signature",
    "signature_diff",
    "signature_mismatch_error",
]

#: Stands for a field that one of two signatures lacks.
MISSING = "<missing>"


def normalise_signature(signature: Mapping[str, Any]) -> dict[str, Any]:
    """`signature` as plain JSON values (lists, floats, ints, str, dicts), keys sorted.

    Raises
    ------
    TileSAMError
        If `signature` is not a dict or holds values JSON cannot represent (NaN included).
    """
    if not isinstance(signature, Mapping):
        raise TileSAMError(f"signature must be a dict, got {type(signature).__name__}.")

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic | np.ndarray):
            return obj.tolist()
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        # Round-trip through JSON so that tuples/lists and numpy/python numbers compare
        # equal to what was stored; NaN is refused because NaN != NaN would never match.
        text = json.dumps(dict(signature), default=default, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TileSAMError(
            f"The cache signature must hold JSON values (str, numbers, lists, dicts): {exc}."
        ) from exc
    return json.loads(text)


def signature_diff(
    stored: Mapping[str, Any], given: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """Fields where `given` differs from the `stored` signature, sorted by dotted name.

    Returns ``(name, stored value, given value)`` triples; a field only one side has shows
    :data:`MISSING` on the other. `given` is normalised first; `stored` is taken as stored.
    """
    old, new = _flatten(stored), _flatten(normalise_signature(given))
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if a != b:
            out.append((key, a, b))
    return out


def check_signature(path: Path, stored: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Raise `signature_mismatch_error` if `given` differs from the cache's `stored` signature."""
    diffs = signature_diff(stored, given)
    if diffs:
        raise signature_mismatch_error(path, diffs)


def signature_mismatch_error(path: Path, diffs: list[tuple[str, Any, Any]]) -> TileSAMError:
    """The error for a cache computed for other inputs: every differing field, and the ways out."""
    lines = "; ".join(f"{k}: cache={a!r}, now={b!r}" for k, a, b in diffs)
    return TileSAMError(
        f"Embedding cache '{path}' was computed for different inputs ({lines}).{_family(diffs)} "
        "Opened "
        "without options for tiling, intensities or slice scale, a session takes the "
        "cache's own. To recompute it (this deletes the cached "
        "embeddings), use Session(..., overwrite=True) or `tilesam embed --overwrite`; to "
        "keep it, choose another cache path."
    )


def _family(diffs: list[tuple[str, Any, Any]]) -> str:
    """A sentence for a cache made by a SAM 1 model asked of a SAM 2 model, or the reverse
    (their caches differ in kind: SAM 2 keeps high-resolution features too); else ""."""
    encoders = {k: (a, b) for k, a, b in diffs}.get("model.encoder")
    if encoders is None or (encoders[0] in SQUARE_RESIZE) == (encoders[1] in SQUARE_RESIZE):
        return ""
    made, now = ("SAM 2.1", "SAM 1") if encoders[0] in SQUARE_RESIZE else ("SAM 1", "SAM 2.1")
    return (
        f" It was made by a {made} model, and this session's model is a {now} model: a SAM 2.1 "
        "model's cache keeps each tile's high-resolution features as well and embeds tiles "
        "another way, so the two families never share a cache."
    )


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def cache_signature(
    card: ModelCard,
    grid: TileGrid,
    slice_scale: float | None,
    normalisation: Mapping[str, Any],
    source: ImageSource,
) -> dict[str, Any]:
    """Everything a session's embeddings depend on: the model, the tiling and the
    magnification, the intensity normalisation and the image itself.

    >>> from tilesam.cache.tiling import TileGrid
    >>> from tilesam.io import open_image
    >>> from tilesam.models.card import ModelCard
    >>> card = ModelCard("tiny", "abc", "tiny_cnn", 256, (256, 16, 16))
    >>> image = open_image(np.zeros((300, 300), np.uint8))
    >>> sig = cache_signature(card, TileGrid((300, 300), 256, 16), None, {"method": "uint8"},
    ...                       image)
    >>> sig["tiling"], sig["image"]["shape"]
    ({'tile_size': 256, 'halo': 16}, [300, 300])
    """
    tiling: dict[str, Any] = {"tile_size": grid.tile_size, "halo": grid.halo}
    # Only when set: caches embedded at SAM's convention keep their signature.
    if slice_scale is not None:
        tiling["slice_scale"] = slice_scale
    model = card.signature()
    if card.encoder in SQUARE_RESIZE:  # SAM 2: see tilesam.cache.canvas
        model["resize"] = "square"  # to the model input, aspect ratio not kept
        tiling["canvas"] = "tile"  # each tile padded to the full tile (clipped to the image)
    return {
        "model": model,
        "tiling": tiling,
        "normalisation": dict(normalisation),
        "image": {
            "shape": list(source.shape),
            "dtype": source.dtype.str,
            "axes": source.axes,
            "content": content_signature(source),
        },
    }
