"""What a session opens with: its inputs checked, and the cache it reads or creates.

A cache opens the same from every face (the API, the command line, napari, QGIS): without
options a session takes an existing cache's tiling, magnification and intensity range
(:func:`stored_cache` reads them before anything is chosen); asking for others is refused
when the cache is opened (:meth:`tilesam.cache.store.EmbeddingStore.open_or_create`), with
the way out. Which model answers is :mod:`tilesam.segment.model_source`'s part.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.cache.memory import MemoryStore
from tilesam.cache.normalisation import fixed_normalisation, image_normalisation
from tilesam.cache.scale import check_scale, default_slice_scale
from tilesam.cache.signature import cache_signature
from tilesam.cache.store import EmbeddingStore
from tilesam.cache.tiling import DEFAULT_HALO, TileGrid
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource
from tilesam.models.card import ModelCard


def positive(name: str, value: Any) -> int | None:
    """`value` if None or a positive integer, else one error naming `name` (0 is not "the
    default": a user who typed it meant something).

    >>> positive("max_tiles", 0)
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: max_tiles must be a positive whole number (or left out), got 0.
    """
    whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if value is not None and not (whole and value > 0):
        raise TileSAMError(f"{name} must be a positive whole number (or left out), got {value!r}.")
    return value


def check_channels(source: ImageSource) -> None:
    """The encoder sees one channel or three (a fourth: an RGBA picture's opacity)."""
    raster = source.georeference is not None  # a raster's fourth band is data, not opacity
    if source.n_channels in ((1, 3) if raster else (1, 3, 4)):
        return
    fix = (
        "choose one band or three with bands= (open_image(path, bands=(4, 3, 2)); on the "
        "command line --bands 4,3,2)"
        if raster
        else "select one channel or three first"
    )
    raise TileSAMError(
        f"{source.describe()} has {source.n_channels} channels; TileSAM segments greyscale "
        f"or RGB images: {fix}."
    )


def stored_cache(path: Path | None, overwrite: bool) -> EmbeddingStore | None:
    """The TileSAM cache at `path`, read-only; None where there is none yet (a missing or
    empty folder, or a creation an older TileSAM left unfinished, which is replaced), where
    it is to be replaced (`overwrite`) or where the session keeps embeddings in memory."""
    if overwrite or path is None:
        return None
    return EmbeddingStore.open_existing(path, mode="r")  # raises for anything else


def max_scale(
    option: Any, tiling: Mapping[str, Any], cached: bool, source: ImageSource
) -> float | None:
    """The largest magnification: the option, where ``"auto"`` takes an existing cache's
    (a cache opens the same from every face), else the default for the image."""
    if not (isinstance(option, str) and option == "auto"):
        return check_scale(option)
    if cached:
        return check_scale(tiling.get("slice_scale"))
    return default_slice_scale(source)


def session_grid(
    source: ImageSource,
    tile_size: int | None,
    halo: int | None,
    tiling: Mapping[str, Any],
    input_size: int,
) -> TileGrid:
    """The tile grid: the options given, else an existing cache's `tiling`, else tiles of
    the model's input size (no resizing) and :data:`~tilesam.cache.tiling.DEFAULT_HALO`.

    >>> from tilesam.io import open_image
    >>> session_grid(open_image(np.zeros((300, 200))), None, None, {"halo": 16}, 128).halo
    16
    """
    tile_size = positive("tile_size", tile_size) or tiling.get("tile_size")
    tile_size = tile_size or input_size
    halo = halo if halo is not None else tiling.get("halo", DEFAULT_HALO)
    return TileGrid(source.slice_shape, tile_size, halo)


def session_normalisation(
    intensity: Any, window: Any, source: ImageSource, known: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The signature's normalisation entry: a user range or a CT window, else an existing
    cache's own (`known`), else the image's (:mod:`tilesam.cache.normalisation`)."""
    normalisation = fixed_normalisation(intensity, window)
    return normalisation or image_normalisation(source, known)


def open_store(
    path: Path | None,
    card: ModelCard,
    grid: TileGrid,
    source: ImageSource,
    scale: float | None,
    normalisation: dict[str, Any],
    *,
    overwrite: bool,
    encoding: str,
) -> tuple[MemoryStore | EmbeddingStore, dict[str, Any]]:
    """The session's embedding store, in memory (`path` None) or the zarr cache at `path`
    opened, resumed or created for these inputs, and the inputs' cache signature."""
    sig = cache_signature(card, grid, scale, normalisation, source)
    grid_shape = (source.n_slices, *grid.grid_shape)
    emb_shape, high_res = card.embedding_shape, card.high_res_shapes
    if path is None:
        return MemoryStore(grid_shape, emb_shape, high_res), sig
    store = EmbeddingStore.open_or_create(
        path,
        signature=sig,
        grid_shape=grid_shape,
        embedding_shape=emb_shape,
        overwrite=overwrite,
        high_res_shapes=high_res,
        encoding=encoding,
    )
    return store, sig
