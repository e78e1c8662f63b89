"""The decoder's weights kept in an embedding store, so that clicks need no torch.

A session that has its model writes the prompt encoder and mask decoder into the cache
once; a later session over that cache answers prompts with them in NumPy
(:mod:`tilesam.decode.numpy_decoder`) and never loads the model unless a tile is missing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from tilesam.cache import creation
from tilesam.errors import TileSAMError


def write_decoder(
    group: zarr.Group, path: Path, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]
) -> None:
    """Keep the model's prompt encoder and mask decoder (``weights``, named as in its
    state dict, and the ``config`` that :class:`tilesam.decode.numpy_decoder.DecoderConfig`
    reads) in the store, so that a later session answers clicks without torch.

    One flat float32 array; its attributes name each entry and hold the SHA-256 of the
    data, which :func:`read_decoder` checks: a reader never takes half-written weights.
    It is written in a hidden folder beside it and renamed into place.
    """
    names = sorted(weights)
    arrays = [np.asarray(weights[n], dtype=np.float32) for n in names]
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0, np.float32)
    entries = [[n, list(a.shape)] for n, a in zip(names, arrays)]
    layout = {"entries": entries, "config": dict(config)}
    attrs = {**layout, "sha256": _digest(layout, flat)}
    target = path / "decoder"
    try:
        with creation.staged(target) as tmp:
            array = zarr.create_array(
                str(tmp), shape=flat.shape, chunks=flat.shape or (1,), dtype="float32",
                fill_value=0.0, attributes=attrs, zarr_format=3,
            )  # fmt: skip
            array[...] = flat
            _put_in_place(group, tmp, target)
    except OSError as err:
        fix = "Free space on that disk and" if err.errno == errno.ENOSPC else "Make it writable and"
        raise TileSAMError(
            f"Could not store the decoder's weights in embedding cache '{path}': "
            f"{err.strerror or err}. {fix} run it again."
        ) from err


def _put_in_place(group: zarr.Group, tmp: Path, target: Path) -> None:
    """Rename the weights written in `tmp` to `target`: built aside, they appear whole or
    not at all, and sessions storing them at the same time never remove each other's
    (weights already there that check out are kept; damaged ones are replaced)."""
    try:
        os.rename(tmp, target)
        return
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if read_decoder(group) is not None:
        return  # another session stored them first
    aside = creation.sibling(target, "old")
    with contextlib.suppress(FileNotFoundError):
        os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def read_decoder(group: zarr.Group) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The decoder's weights and config as :func:`write_decoder` stored them; None when
    the store holds none (written by an earlier TileSAM) or they do not check out (their
    names, shapes, config and values are checksummed together)."""
    try:
        array = group["decoder"]
        attrs = dict(array.attrs)
        flat = np.asarray(array[...], dtype=np.float32)
        layout = {"entries": attrs["entries"], "config": attrs["config"]}
        if attrs.get("sha256") != _digest(layout, flat):
            return None
        weights, start = {}, 0
        for name, shape in layout["entries"]:
            size = math.prod(shape)
            weights[name] = flat[start : start + size].reshape(shape)
            start += size
    except Exception:  # noqa: BLE001 - absent or unreadable: the model decodes instead
        return None
    return weights, dict(layout["config"])


def _digest(layout: Mapping[str, Any], values: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(layout, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()
