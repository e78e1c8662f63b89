"""``tilesam embed`` (fill an embedding cache), ``tilesam info`` (what a cache holds) and
``tilesam check`` (whether its tiles are intact, and discarding those that are not)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping
from typing import Any

from tilesam.cli._options import Command, add_model_options, add_session_options, make_session


def _embed_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file or folder (TIFF, OME-TIFF, zarr)")
    p.add_argument("--cache", required=True, help="embedding cache folder (zarr), resumable")
    p.add_argument(
        "--batch", type=int, default=None,
        help="tiles per encoder batch (default: 4 for small encoders, 1 for ViT-B and larger)",
    )  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="local dask worker processes")
    p.add_argument("--dask", default=None, metavar="ADDRESS", help="dask scheduler address")
    add_session_options(p)
    add_model_options(p)


def _run_embed(args: argparse.Namespace) -> None:
    session = make_session(args, args.cache)
    _refuse_damaged(session.store)
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


def _refuse_damaged(store: Any) -> None:
    """Stop before embedding into a cache with damaged tiles: say which, and the fix."""
    from tilesam.cache.store import EmbeddingStore
    from tilesam.errors import TileSAMError

    if not isinstance(store, EmbeddingStore) or store.n_done == 0:
        return
    check = store.verify(progress=True)
    if check.ok:
        return
    shown = sorted(check.damaged.items())[:5]
    more = len(check.damaged) - len(shown)
    lines = "; ".join(f"{tile}: {why}" for tile, why in shown) + (f"; {more} more" if more else "")
    if check.decoder == "damaged":
        lines = (lines + "; " if lines else "") + "the decoder's weights do not check out"
    raise TileSAMError(
        f"Embedding cache '{store.path}' has {len(check.damaged)} damaged tile(s) ({lines}). "
        f"Run `tilesam check {store.path} --repair` to discard them, then this `tilesam "
        "embed` again to compute them."
    )


def _info_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("cache", help="embedding cache folder")


def _run_info(args: argparse.Namespace) -> None:
    from tilesam.cache.store import EmbeddingStore

    info = EmbeddingStore.open(args.cache, mode="r").info()
    print(f"cache: {info['path']}")
    sealed = "tiles checksummed" if info["verified"] else "no checksums: recompute to get them"
    print(f"format: {info['format_version']} ({sealed})  created: {info['created']}")
    for key, value in _flat(info["signature"]):
        print(f"  {key}: {value}")
    n_done, n_tiles = info["n_done"], info["n_tiles"]
    state = "complete" if info["complete"] else f"{n_tiles - n_done} missing"
    print(f"tiles: {n_done}/{n_tiles} done ({state}); grid (z, y, x) {info['grid_shape']}")
    size, decoder = info["bytes_on_disk"], info["decoder_bytes"]
    per_tile = f", {(size - decoder) / n_done / 2**20:.2f} MiB per tile" if n_done else ""
    kept = f", the decoder's weights {decoder / 2**20:.1f} MiB" if decoder else ""
    print(f"size on disk: {size / 2**20:.1f} MiB{per_tile}{kept}")


def _check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("cache", help="embedding cache folder")
    p.add_argument(
        "--repair",
        action="store_true",
        help="discard the damaged tiles, so that `tilesam embed` computes them again",
    )


def _run_check(args: argparse.Namespace) -> int:
    from tilesam.cache.store import EmbeddingStore

    store = EmbeddingStore.open(args.cache, mode="r+" if args.repair else "r")
    check = store.verify(repair=args.repair, progress=True)
    print(check.summary())
    return 0 if check.ok else 1


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
    Command(
        "check",
        "check every tile of an embedding cache; --repair discards damaged ones",
        _check_options,
        _run_check,
        description="Check every finished tile of an embedding cache (its chunks, metadata "
        "and checksums) and list the damaged ones; exit status 1 if there are any. With "
        "--repair they are discarded, and `tilesam embed` (which resumes) computes them again.",
    ),
)
