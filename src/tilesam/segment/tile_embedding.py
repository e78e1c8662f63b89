"""Which of a session's tiles are to embed, and embedding them on dask workers.

A session embeds the tiles still missing from its store: all of them, those of some
slices, those meeting a part of a huge scene (the grid and intensity range stay the whole
image's, so a mask does not depend on which part was embedded first), or those a prompt
needs. In this process they go through :func:`tilesam.cache.embed.embed_tiles`; on dask
workers through :func:`tilesam.cache.distributed.embed_distributed`, which needs an
on-disk cache that every worker writes to.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.cache.memory import MemoryStore
from tilesam.cache.store import EmbeddingStore
from tilesam.cache.tiling import TileGrid, TileIndex
from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource
from tilesam.segment.prompt_input import check_z
from tilesam.segment.stitch import seed_tiles

if TYPE_CHECKING:
    from tilesam.cache.distributed import ModelRecipe
    from tilesam.models.sam_model import SamModel


def missing_tiles(
    store: MemoryStore | EmbeddingStore,
    grid: TileGrid,
    source: ImageSource,
    slices: int | list[int] | None = None,
    extent: Any = None,
) -> list[TileIndex]:
    """Tiles ``(z, ty, tx)`` still to embed, of all slices or only of `slices`, and only
    those of the image's tile grid that meet `extent` ``(y0, x0, y1, x1)`` if given."""
    missing = store.missing_tiles()
    if extent is not None:
        wanted = set(grid.tiles_for_box(*np.ravel(extent).astype(float)))
        missing = [t for t in missing if t[1:] in wanted]
    if slices is None:
        return missing
    wanted = {slices} if isinstance(slices, int | np.integer) else set(slices)
    for z in wanted:
        check_z(source, z)
    return [t for t in missing if t[0] in wanted]


def prompt_tiles(grid: TileGrid, prompt: Prompt, z: int) -> list[TileIndex]:
    """The tiles ``(z, ty, tx)`` a prompt's answer starts in, and their neighbours
    (where an object crossing a tile border goes on): what a click needs embedded."""
    (ny, nx), near = grid.grid_shape, set()
    for ty, tx in seed_tiles(grid, prompt):
        near.update(
            (z, a, b)
            for a in range(max(ty - 1, 0), min(ty + 2, ny))
            for b in range(max(tx - 1, 0), min(tx + 2, nx))
        )
    return sorted(near)


def check_workers(cache_path: Path | None, workers: Any) -> None:
    """Refuse dask workers without an on-disk cache, or a number of workers that is not
    one."""
    if cache_path is None:
        raise TileSAMError(
            "Embedding on dask workers needs an on-disk cache that all workers write "
            "to: create the session with cache='image.zarr'."
        )
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise TileSAMError(f"workers must be a positive integer, got {workers!r}.")


def embed_on_workers(
    model: SamModel,
    recipe: ModelRecipe | None,
    source: ImageSource,
    grid: TileGrid,
    cache_path: Path,
    tiles: list[TileIndex],
    **options: Any,
) -> int:
    """Embed `tiles` into the cache at `cache_path` on dask workers; returns how many.

    The workers rebuild the model from `recipe`, or where there is none (a model loaded
    by the caller) from its weights written next to the cache for them and removed after.
    `options` are :func:`tilesam.cache.distributed.embed_distributed`'s."""
    from tilesam.cache.distributed import embed_distributed, recipe_from_model

    written = recipe is None
    recipe = recipe or recipe_from_model(model, cache_path.parent)
    try:
        return embed_distributed(recipe, source, grid, cache_path, tiles, **options)
    finally:
        if written:  # the weights file written for the workers
            Path(recipe.checkpoint).unlink(missing_ok=True)
