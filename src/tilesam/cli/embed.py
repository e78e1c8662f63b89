"""``tilesam embed`` (fill an embedding cache) and ``tilesam info`` (what a cache holds)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping
from typing import Any

from tilesam.cli._options import Command, add_model_options, add_session_options, make_session


def _embed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file or folder (TIFF, OME-TIFF, zarr)")
    p.add_argument("--cache", required=True, help="embedding cache folder (zarr), resumable")
    p.add_argument("--batch", type=int, default=4, help="tiles per encoder batch")
    p.add_argument("--workers", type=int, default=None, help="local dask worker processes")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="dask scheduler address")
    add_session_options(p)
    add_model_options(p)


def _run_embed(args: argparse.Namespace) -> None:
    session = make_session(args, args.cache)
    start = time.perf_counter()
    n = session.embed(
        progress=True, batch_size=args.batch, workers=args.workers, scheduler=args.dask
    )
    seconds = time.perf_counter() - start
    rate = f", {n / seconds:.2f} tiles/s" if n else ""
    print(
        f"cache: {session.cache_path}  tiles: {session.n_done}/{session.n_tiles} done "
        f"(computed {n} in {seconds:.1f} s{rate})"
    )


def _info_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("cache", help="embedding cache folder")


def _run_info(args: argparse.Namespace) -> None:
    from tilesam.cache.store import EmbeddingStore

    info = EmbeddingStore.open(args.cache, mode="r").info()
    print(f"cache: {info['path']}")
    print(f"format: {info['format_version']}  created: {info['created']}")
    for key, value in _flat(info["signature"]):
        print(f"  {key}: {value}")
    n_done, n_tiles = info["n_done"], info["n_tiles"]
    state = "complete" if info["complete"] else f"{n_tiles - n_done} missing"
    print(f"tiles: {n_done}/{n_tiles} done ({state}); grid (z, y, x) {info['grid_shape']}")
    size, decoder = info["bytes_on_disk"], info["decoder_bytes"]
    per_tile = f", {(size - decoder) / n_done / 2**20:.2f} MiB per tile" if n_done else ""
    kept = f", the decoder's weights {decoder / 2**20:.1f} MiB" if decoder else ""
    print(f"size on disk: {size / 2**20:.1f} MiB{per_tile}{kept}")


def _flat(d: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested settings as dotted keys, as `info` prints them.

    >>> list(_flat({"tiling": {"tile_size": 384}, "format": 2}))
    [('tiling.tile_size', 384), ('format', 2)]
    """
    for key, value in d.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


COMMANDS = (
    Command(
        "embed", "precompute an image's tile embeddings into a cache", _embed_options, _run_embed
    ),
    Command("info", "show what an embedding cache holds", _info_options, _run_info),
)
