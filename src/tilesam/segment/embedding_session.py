"""The half of a :class:`~tilesam.segment.session.Session` that fills its cache: one image,
its tile grid, the model and the embedding store, opened together; which tiles are done,
and embedding the others.

Users hold a ``Session``, which adds prompts and masks to this; its docstring lists the
parameters. The opening's policies are :mod:`tilesam.segment.opening` and
:mod:`tilesam.segment.model_source`, which tiles to embed :mod:`tilesam.segment.tile_embedding`,
the embedding loop :func:`tilesam.cache.embed.embed_tiles`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilesam.cache.embed import default_batch_size, embed_tiles
from tilesam.cache.embeddings import TileEmbeddings
from tilesam.cache.normalisation import intensity_of
from tilesam.cache.progress import CancelFlag, ProgressCallback
from tilesam.cache.scale import tile_scale
from tilesam.cache.tiling import TileIndex
from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.prompt import Prompt
from tilesam.io import open_image
from tilesam.models.precision import check_precision
from tilesam.segment import model_source, opening, prompt_input, tile_embedding

if TYPE_CHECKING:
    from tilesam.cache.distributed import ModelRecipe
    from tilesam.cache.store import EmbeddingStore
    from tilesam.models.sam_model import SamModel


class EmbeddingSession:
    """One image, one model, one embedding cache: the tiles, and embedding them.

    The base of :class:`~tilesam.segment.session.Session` (the parameters are its); a
    session's embeddings are computed up front with :meth:`embed` (resumable, with
    progress and cancel, optionally on a dask cluster) or on demand by :meth:`embedding`.
    """

    def __init__(
        self,
        image: Any,
        model: str | os.PathLike[str] | SamModel | None = None,
        cache: str | os.PathLike[str] | None = None,
        *,
        tile_size: int | None = None,
        halo: int | None = None,
        intensity: tuple[float, float] | None = None,
        window: str | tuple[float, float] | None = None,
        axes: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | None = None,
        trust_checkpoint: bool = False,
        precision: str = "auto",
        overwrite: bool = False,
        progress: bool = False,
        slice_scale: float | str | None = "auto",
        cache_encoding: str = "float16",
    ) -> None:
        # The parameters are documented on Session, the class users hold.
        self.source = open_image(image, axes=axes)
        opening.check_channels(self.source)
        self.cache_path = None if cache is None else Path(cache).expanduser()
        stored = opening.stored_cache(self.cache_path, overwrite)
        known = {} if stored is None else stored.signature
        request = (model, checkpoint, device, trust_checkpoint, check_precision(precision))
        self._open_model(request, stored)
        tiling = known.get("tiling", {})
        cached = stored is not None
        self._max_scale = opening.max_scale(slice_scale, tiling, cached, self.source)
        size = self._card.image_size
        self.grid = opening.session_grid(self.source, tile_size, halo, tiling, size)
        self.progress = progress
        known_norm = known.get("normalisation")
        norm = opening.session_normalisation(intensity, window, self.source, known_norm)
        self.store, self.signature = opening.open_store(
            self.cache_path,
            self._card,
            self.grid,
            self.source,
            self.slice_scale,
            norm,
            overwrite=overwrite,
            encoding=cache_encoding,
        )
        self.intensity = intensity_of(self.signature["normalisation"])
        self._embeddings = TileEmbeddings(self.store)
        self.predictor = model_source.session_predictor(
            self._model, self._card, self._decoder, self.store
        )

    def _open_model(
        self, request: tuple[Any, Any, Any, bool, str], stored: EmbeddingStore | None
    ) -> None:
        """Which model answers, and the card the cache is checked against: a cache made for
        this model's weights file answers clicks without the model (and without importing
        torch): it keeps the decoder's weights. `request`: the model, checkpoint, device,
        trust and precision arguments."""
        model, checkpoint, *loading = request
        model = model_source.cache_model_name(model, checkpoint, stored)
        self._request = (model, checkpoint, *loading)
        self._model: SamModel | None = None
        self._recipe: ModelRecipe | None = None
        cached = model_source.cached_decoder(model, checkpoint, stored)
        self._card, self._decoder = cached or (self.model.card, None)

    @property
    def model(self) -> SamModel:
        """The model, loaded on first use when the session opened on a cache whose
        embeddings and decoder answer clicks without it (it is needed to embed tiles)."""
        if self._model is None:
            model, recipe = model_source.resolve_model(*self._request)
            # Opened with the model (no cache's decoder), it was checked then.
            if getattr(self, "_decoder", None) is not None:
                model_source.check_same_model(model, self._card)
            self._model, self._recipe = model, recipe
        return self._model

    def __repr__(self) -> str:
        where = self.cache_path or "memory"
        return (
            f"Session({self.source.describe()}, model={self._card.name!r}, cache={where}, "
            f"grid={self.grid_shape}, done={self.n_done}/{self.n_tiles})"
        )

    # -- geometry and progress --------------------------------------------------------------
    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """``(n_slices, n_tiles_y, n_tiles_x)``."""
        return (self.source.n_slices, *self.grid.grid_shape)

    @property
    def n_tiles(self) -> int:
        """Tiles over all slices."""
        return self.source.n_slices * self.grid.n_tiles

    @property
    def n_done(self) -> int:
        """Tiles whose embedding is stored."""
        return self.n_tiles - len(self.store.missing_tiles())

    def missing_tiles(
        self, slices: int | list[int] | None = None, extent: Any = None
    ) -> list[TileIndex]:
        """Tiles ``(z, ty, tx)`` still to embed, of all slices or only of `slices`, and only
        those of the image's tile grid that meet `extent` ``(y0, x0, y1, x1)`` if given."""
        return tile_embedding.missing_tiles(self.store, self.grid, self.source, slices, extent)

    def prompt_tiles(self, prompt: Prompt, z: int = 0) -> list[TileIndex]:
        """The tiles ``(z, ty, tx)`` a prompt's answer starts in, and their neighbours
        (where an object crossing a tile border goes on): what a click needs embedded."""
        prompt_input.check_z(self.source, z)
        return tile_embedding.prompt_tiles(self.grid, prompt, z)

    def is_cached(self, prompt: Prompt, z: int = 0) -> bool:
        """Whether every tile the prompt needs is embedded: then it costs only the decoder."""
        return all(self.store.is_done(*tile) for tile in self.prompt_tiles(prompt, z))

    @property
    def slice_scale(self) -> float | None:
        """The magnification every tile is embedded at (model-input pixels per pixel), or
        None for SAM's convention (see :func:`tilesam.cache.scale.tile_scale`)."""
        grid = self.grid
        return tile_scale(self._max_scale, grid.tile_size, grid.slice_shape, self._card.image_size)

    # -- embedding --------------------------------------------------------------------------
    def embed(
        self,
        progress: bool = True,
        slices: int | list[int] | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        scheduler: Any = None,
        *,
        extent: Any = None,
        callback: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
    ) -> int:
        """Compute the embeddings still missing (all, or of `slices`); returns how many.

        `extent` ``(y0, x0, y1, x1)`` embeds only the tiles of the image's grid that meet
        it: a part of a huge scene, in the same cache as the rest, so that an object's mask
        is the same whatever part was embedded first (the grid and the intensity range are
        the whole image's, never the part's).

        Tiles already in the cache are skipped, so an interrupted run resumes. `batch_size`
        tiles go through the encoder at once (default: 4 for small encoders, 1 for ViT-B
        and larger: :func:`tilesam.cache.embed.default_batch_size`). `progress`
        shows a bar, ``callback(done, total)`` hears of each batch (tiles of this call),
        and a set `cancel` flag (e.g. a ``threading.Event``) stops between batches, keeping
        what is done. With `workers` (a local dask cluster of that many processes) or
        `scheduler` (an address ``"tcp://host:port"`` or a ``distributed.Client``) the
        tiles are embedded by dask workers, which needs an on-disk `cache`.

        Examples
        --------
        >>> from tilesam import Session
        >>> from tilesam.samples import load_sample
        >>> session = Session(load_sample("nuclei")[0], tile_size=128, halo=16)
        >>> done = []
        >>> session.embed(progress=False, callback=lambda n, total: done.append((n, total)))
        9
        >>> done[-1], session.missing_tiles()
        ((9, 9), [])
        """
        tiles = self.missing_tiles(slices, extent)
        if not tiles:
            return 0
        report = {"progress": progress, "callback": callback, "cancel": cancel}
        if workers is None and scheduler is None:
            return self.compute_tiles(tiles, batch_size=batch_size, **report)
        tile_embedding.check_workers(self.cache_path, workers)
        model = self.model  # loads it, and with it how workers rebuild it
        return tile_embedding.embed_on_workers(
            model,
            self._recipe,
            self.source,
            self.grid,
            self.cache_path,
            tiles,
            intensity=self.intensity,
            batch_size=batch_size or default_batch_size(model),
            workers=workers,
            scheduler=scheduler,
            scale=self.slice_scale,
            **report,
        )

    def compute_tiles(
        self,
        tiles: list[TileIndex],
        *,
        batch_size: int | None = None,
        progress: bool = False,
        desc: str = "embedding",
        callback: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
    ) -> int:
        """Embed `tiles` ``(z, ty, tx)`` into the cache in this process; returns how many
        (progress and cancel as for :meth:`embed`)."""
        return embed_tiles(
            self.model,
            self.source,
            self.grid,
            self.store,
            tiles,
            intensity=self.intensity,
            batch_size=batch_size,
            progress=progress,
            desc=desc,
            scale=self.slice_scale,
            callback=callback,
            cancel=cancel,
        )

    def embedding(self, z: int, ty: int, tx: int) -> ImageEmbedding:
        """The embedding of tile ``(ty, tx)`` of slice `z`, computed now if missing."""
        key = (int(z), int(ty), int(tx))
        prompt_input.check_z(self.source, z)
        shape = self.grid.tile_shape(ty, tx)  # raises for a tile outside the grid
        if not self.store.is_done(*key):
            self.compute_tiles([key], progress=self.progress, desc="embedding (on demand)")
        return self._embeddings.read(key, shape)
