"""`Session`: one image, one model, one embedding cache; prompts in, masks out.

A session ties together the pieces of the large-image path::

    image (any size, 2D or 3D) ──► TileGrid ──► embeddings (zarr cache or memory)
                                                      │
    points / box in image coordinates ──► stitch_segment (tile to tile) ──► SegmentResult

The policies it applies live beside it: one intensity range per image
(:mod:`tilesam.cache.normalisation`), the slice scale of volumes
(:mod:`tilesam.cache.scale`), the cache signature (:mod:`tilesam.cache.signature`), the
model or the cache's own decoder (:mod:`tilesam.segment.model_source`). A cache opens the
same from every face: without options a session takes an existing cache's model, tiling,
magnification and intensity range; asking for others is refused with the way out.
Embeddings are computed up front with `Session.embed` (resumable, with progress and
cancel, optionally on a dask cluster) or on demand by `Session.segment`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.cache.embed import embed_tiles
from tilesam.cache.embeddings import TileEmbeddings
from tilesam.cache.memory import MemoryStore
from tilesam.cache.normalisation import fixed_normalisation, image_normalisation, intensity_of
from tilesam.cache.progress import CancelFlag, ProgressCallback
from tilesam.cache.scale import check_scale, default_slice_scale, tile_scale
from tilesam.cache.signature import cache_signature
from tilesam.cache.store import EmbeddingStore
from tilesam.cache.tiling import DEFAULT_HALO, TileGrid, TileIndex
from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.numpy_decoder import NumpyPredictor
from tilesam.decode.predictor import MaskPredictor, Prediction
from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource, open_image
from tilesam.segment import model_source
from tilesam.segment.result import SegmentResult, without_nodata
from tilesam.segment.stitch import default_margin, merge_tiles, seed_tiles, stitch_segment

if TYPE_CHECKING:
    from tilesam.cache.distributed import ModelRecipe
    from tilesam.models.sam_model import SamModel

logger = logging.getLogger(__name__)

# Over 400 lines, and kept whole: Session is the one object users hold, and each method is
# a thin door to the modules above (policies, stitching, the embedding loop); most of the
# length is the docstrings' runnable examples.


class Session:
    """Segment a (possibly huge) image interactively from a tiled embedding cache.

    Parameters
    ----------
    image : path, array or ImageSource
        Anything :func:`tilesam.open_image` opens; 2D, 2D RGB, or a volume (``z=``).
    model : str, path or SamModel, optional
        A registry name, a checkpoint file or a loaded model; default: an existing cache's
        registry model, else ``load_model()``.
        A name or file whose weights made the existing `cache` is loaded only when a tile
        must be embedded: until then the decoder weights the cache keeps answer prompts in
        NumPy (:attr:`predictor`), and torch is never imported.
    cache : path, optional
        A zarr embedding cache (created if missing, resumed if it matches); ``None``
        keeps embeddings in memory.
    tile_size : int, optional
        Tile edge in pixels; default: an existing cache's, else the model input size (no
        resizing).
    halo : int, optional
        Context each tile shares with its neighbours (see :class:`TileGrid`); default: an
        existing cache's, else 64.
    intensity : (low, high), optional
        Fixed intensity range; default: an existing cache's range (a CT window or a user's
        range included), else percentiles of a strided sample of the whole image (of its
        non-zero voxels for a volume: MR and microscopy stacks are zero-padded).
    window : str or (width, level), optional
        A CT window in Hounsfield units instead of `intensity`: a name of
        :data:`tilesam.models.preprocess.CT_WINDOWS` (``"lung"``, ``"soft-tissue"``, ...)
        or a custom ``(width, level)``. Only what the encoder sees changes; it is part of the cache
        signature.
    axes : str, optional
        The image's axis order, if its reader cannot tell.
    checkpoint, device, trust_checkpoint
        As for :func:`tilesam.load_model`, when `model` is not a loaded model.
    overwrite : bool
        Replace a TileSAM cache made for other inputs instead of raising.
    progress : bool
        Show a progress bar when tiles are embedded on demand.
    slice_scale : float, None or "auto"
        Enlarge tiles at most this many times (model-input pixels per pixel, > 0) instead of
        SAM's convention (None: each tile's longest side fills the model input). Every tile
        is then embedded at the one magnification :attr:`slice_scale` (a small slice
        black-padded, see :func:`tilesam.cache.embed.embed_scaled`), which is recorded in
        the cache signature (``tiling.slice_scale``): a cache made at another
        magnification, or at SAM's, is refused. ``"auto"`` (the default, also that of the
        command line and the napari plugin, so all three share caches): an existing
        cache's, else :func:`tilesam.cache.scale.default_slice_scale`,
        :data:`~tilesam.cache.scale.DEFAULT_SLICE_SCALE` for volumes and SAM's convention
        for 2D images.
    cache_encoding : {"float16", "q8"}
        How a new on-disk cache stores embeddings: float16, or ``"q8"`` (8 bits a value,
        per-channel scale, within half a step of float16's values; about half the bytes,
        masks ≥ 99.9 % equal: :mod:`tilesam.cache.codec`). An existing cache keeps its own.

    Attributes
    ----------
    predictor : MaskPredictor
        What turns prompts into masks: the loaded model, or a
        :class:`tilesam.decode.numpy_decoder.NumpyPredictor` on the cache's decoder weights.

    Examples
    --------
    >>> import tempfile
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")  # 256 x 256 fluorescence, 65 nuclei
    >>> cache = tempfile.mkdtemp() + "/nuclei.zarr"
    >>> s = Session(image, "tiny", cache=cache, tile_size=128, halo=16)
    >>> s.grid_shape, s.embed(progress=False)  # 3 x 3 tiles; a second run embeds none
    ((1, 3, 3), 9)
    >>> y, x = np.argwhere(truth == 1).mean(axis=0)  # a click inside nucleus 1
    >>> r = s.segment(points=[(y, x)])
    >>> bool(truth[r.mask].mean() > 0.5), r.window.shape == r.mask[r.mask.any(1)].shape
    (True, False)
    >>> Session(image, cache=cache).grid.halo  # reopened without options: the cache's own
    16
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
        overwrite: bool = False,
        progress: bool = False,
        slice_scale: float | str | None = "auto",
        cache_encoding: str = "float16",
    ) -> None:
        self.source = open_image(image, axes=axes)
        _check_channels(self.source)
        self.cache_path = None if cache is None else Path(cache).expanduser()
        stored = None if overwrite or cache is None else _stored(self.cache_path)
        known = {} if stored is None else stored.signature
        model = model_source.cache_model_name(model, checkpoint, stored)
        self._request = (model, checkpoint, device, trust_checkpoint)
        self._model: SamModel | None = None
        self._recipe: ModelRecipe | None = None
        # A cache made for this model's weights file answers clicks without the model
        # (and without importing torch): it keeps the decoder's weights.
        cached = model_source.cached_decoder(model, checkpoint, stored)
        self._card, self._decoder = cached or (self.model.card, None)
        tiling = known.get("tiling", {})
        self._max_scale = self._scale_option(slice_scale, tiling, stored is not None)
        tile_size = _positive("tile_size", tile_size) or tiling.get("tile_size")
        tile_size = tile_size or self._card.image_size
        halo = halo if halo is not None else tiling.get("halo", DEFAULT_HALO)
        self.grid = TileGrid(self.source.slice_shape, tile_size, halo)
        self.progress = progress
        norm = fixed_normalisation(intensity, window)
        norm = norm or image_normalisation(self.source, known.get("normalisation"))
        self.store, self.signature = self._open_store(norm, overwrite, cache_encoding)
        self.intensity = intensity_of(self.signature["normalisation"])
        self._embeddings = TileEmbeddings(self.store)
        self.predictor = self._predictor()

    def _scale_option(self, option: Any, tiling: Mapping[str, Any], cached: bool) -> float | None:
        """The largest magnification: the option, where ``"auto"`` takes an existing cache's
        (a cache opens the same from every face), else the default for the image."""
        if not (isinstance(option, str) and option == "auto"):
            return check_scale(option)
        if cached:
            return check_scale(tiling.get("slice_scale"))
        return default_slice_scale(self.source)

    @property
    def model(self) -> SamModel:
        """The model, loaded on first use when the session opened on a cache whose
        embeddings and decoder answer clicks without it (it is needed to embed tiles)."""
        if self._model is None:
            model, recipe = model_source.resolve_model(*self._request)
            self._check_same_model(model)
            self._model, self._recipe = model, recipe
        return self._model

    def _check_same_model(self, model: SamModel) -> None:
        """Refuse a model loaded later than the session opened (to embed a missing tile)
        that is not the one the cache and its decoder were checked against: its weights
        file changed in between."""
        if getattr(self, "_decoder", None) is None:  # opened with the model: checked then
            return
        loaded, card = model.card, self._card
        fields = ("weights_hash", "encoder", "image_size", "embedding_shape")
        changed = [f for f in fields if getattr(loaded, f) != getattr(card, f)]
        if changed:
            raise TileSAMError(
                f"The weights of model {card.name!r} changed on disk since this session "
                f"opened its cache ({', '.join(changed)} differ): the cache's embeddings "
                "belong to the old weights. Open a new session (with overwrite=True to "
                "recompute the cache for the new weights)."
            )

    def _predictor(self) -> MaskPredictor:
        """What turns prompts into masks: the loaded model, else the cache's decoder
        weights in NumPy. A new on-disk cache is given the loaded model's decoder."""
        if self._model is None:
            card = self._card
            thresholds = {"mask_threshold": card.mask_threshold}
            thresholds["box_mask_threshold"] = card.box_mask_threshold
            return NumpyPredictor(self._decoder, **thresholds)
        store, sam2 = self.store, bool(self._card.high_res_shapes)
        # SAM 2's decoder (with high-resolution features) is not one NumPy runs: not stored.
        if not sam2 and isinstance(store, EmbeddingStore) and store.read_decoder() is None:
            weights, config = self._model.decoder_weights()
            try:
                self.store.write_decoder(weights, config.to_dict())
            except TileSAMError as err:  # the cache serves as it is; sessions load the model
                logger.warning("%s", err)
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
        missing = self.store.missing_tiles()
        if extent is not None:
            wanted = set(self.grid.tiles_for_box(*np.ravel(extent).astype(float)))
            missing = [t for t in missing if t[1:] in wanted]
        if slices is None:
            return missing
        wanted = {slices} if isinstance(slices, int | np.integer) else set(slices)
        for z in wanted:
            self._check_z(z)
        return [t for t in missing if t[0] in wanted]

    def prompt_tiles(self, prompt: Prompt, z: int = 0) -> list[TileIndex]:
        """The tiles ``(z, ty, tx)`` a prompt's answer starts in, and their neighbours
        (where an object crossing a tile border goes on): what a click needs embedded."""
        self._check_z(z)
        (ny, nx), near = self.grid.grid_shape, set()
        for ty, tx in seed_tiles(self.grid, prompt):
            near.update(
                (z, a, b)
                for a in range(max(ty - 1, 0), min(ty + 2, ny))
                for b in range(max(tx - 1, 0), min(tx + 2, nx))
            )
        return sorted(near)

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
        batch_size: int = 4,
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

        Tiles already in the cache are skipped, so an interrupted run resumes. `progress`
        shows a bar, ``callback(done, total)`` hears of each batch (tiles of this call),
        and a set `cancel` flag (e.g. a ``threading.Event``) stops between batches, keeping
        what is done. With `workers` (a local dask cluster of that many processes) or
        `scheduler` (an address ``"tcp://host:port"`` or a ``distributed.Client``) the
        tiles are embedded by dask workers, which needs an on-disk `cache`.

        Examples
        --------
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
        if self.cache_path is None:
            raise TileSAMError(
                "Embedding on dask workers needs an on-disk cache that all workers write "
                "to: create the session with cache='image.zarr'."
            )
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise TileSAMError(f"workers must be a positive integer, got {workers!r}.")
        from tilesam.cache.distributed import embed_distributed, recipe_from_model

        model = self.model  # loads it, and with it how workers rebuild it
        recipe = self._recipe or recipe_from_model(model, self.cache_path.parent)
        try:
            return embed_distributed(
                recipe,
                self.source,
                self.grid,
                self.cache_path,
                tiles,
                intensity=self.intensity,
                batch_size=batch_size,
                workers=workers,
                scheduler=scheduler,
                scale=self.slice_scale,
                **report,
            )
        finally:
            if self._recipe is None:  # the weights file written for the workers
                Path(recipe.checkpoint).unlink(missing_ok=True)

    def compute_tiles(
        self,
        tiles: list[TileIndex],
        *,
        batch_size: int = 4,
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
        self._check_z(z)
        shape = self.grid.tile_shape(ty, tx)  # raises for a tile outside the grid
        if not self.store.is_done(*key):
            self.compute_tiles([key], progress=self.progress, desc="embedding (on demand)")
        return self._embeddings.read(key, shape)

    # -- segmentation -----------------------------------------------------------------------
    def segment(
        self,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        *,
        z: int | None = None,
        multimask: bool | None = None,
        max_tiles: int = 16,
        tight_box: bool = True,
        points_xy: Any = None,
        box_xy: Any = None,
        crs: Any = None,
    ) -> SegmentResult:
        """Segment one object from points ``(y, x)`` / a box ``(y0, x0, y1, x1)`` in image
        coordinates of slice `z` (or a checked :class:`~tilesam.decode.prompt.Prompt` as
        `points`). On a volume, points may be ``(z, y, x)`` and the box ``(z, y0, x0, y1,
        x1)``, all on one slice, which is then `z`; a volume's slice is never guessed.

        On a georeferenced raster the prompt may be in map coordinates instead:
        `points_xy` ``(x, y)`` or ``(x, y, label)`` and `box_xy` ``(xmin, ymin, xmax, ymax)``
        in `crs` (default: the raster's; e.g. ``"EPSG:4326"``, longitude then latitude).

        The object comes back whole when it crosses tile borders (see
        :mod:`tilesam.segment.stitch`), with at most `max_tiles` tile predictions.
        `multimask` (default: for a single point without a box) picks the best of three
        candidate masks; ``tight_box=False`` for a box not drawn tight around the object
        (see :meth:`tilesam.SamModel.predict`). The result keeps only the window around the
        mask: ``.bbox``, ``.window``, ``.offset``; ``.mask`` builds the full ``(H, W)``
        array on request.

        Examples
        --------
        >>> from tilesam.samples import load_sample
        >>> image, truth = load_sample("nuclei")
        >>> y, x = np.argwhere(truth == 1).mean(axis=0)
        >>> r = Session(image).segment(points=[(y, x)], labels=[1])
        >>> r.shape == image.shape, set(np.unique(truth[r.mask])) >= {1}
        (True, True)
        """
        if points_xy is not None or box_xy is not None or crs is not None:
            points, labels, box = self._from_map(points, box, points_xy, box_xy, crs)
        z, points, box = self._slice_of(z, points, box)
        prompt = self.prompt(points, labels, box)
        options = {"multimask": multimask, "max_tiles": max_tiles, "tight_box": tight_box}
        return self._segment(prompt, z=z, **options)[0]

    def _from_map(self, points: Any, box: Any, points_xy: Any, box_xy: Any, crs: Any) -> tuple:
        """Pixel points, labels and box of a prompt given in map coordinates."""
        from tilesam.io.map_prompts import prompt_box_from_map, prompt_points_from_map

        if points is not None or box is not None:
            raise TileSAMError(
                "Give the prompt in pixels (points=, box=) or on the map (points_xy=, box_xy=, "
                "crs=), not both."
            )
        geo, shape = self.source.georeference, self.grid.slice_shape
        pixels, labels = (None, None)
        if points_xy is not None:
            pixels, labels = prompt_points_from_map(points_xy, geo, crs=crs, shape=shape)
        if box_xy is not None:
            box = prompt_box_from_map(box_xy, geo, crs=crs, shape=shape)
        return pixels, labels, box

    def _slice_of(self, z: int | None, points: Any, box: Any) -> tuple[int, Any, Any]:
        """The slice a prompt is on, and its 2D points and box: `z`, or a volume's
        ``(z, y, x)`` points / ``(z, y0, x0, y1, x1)`` box; a 2D image's slice 0."""
        volume, named = self.source.n_slices > 1, set()
        if volume and points is not None and not isinstance(points, Prompt) and len(points):
            zyx = np.asarray(points, dtype=object)
            if zyx.ndim == 2 and zyx.shape[1] == 3:
                named.update(float(v) for v in zyx[:, 0])
                points = [tuple(p[1:]) for p in zyx]
        if volume and box is not None and np.size(box) == 5:
            named.add(float(np.ravel(box)[0]))
            box = tuple(np.ravel(box)[1:])
        if z is not None:
            named.add(z)
        if len(named) > 1:
            raise TileSAMError(
                f"The prompt is on slices {sorted(named)}: segment one slice at a time, or "
                "carry an object through the volume with propagate_mask."
            )
        if not named:
            if volume:
                raise TileSAMError(
                    f"{self.source.describe()} is a volume of {self.source.n_slices} slices: "
                    "give z= (the slice), or (z, y, x) points / a (z, y0, x0, y1, x1) box."
                )
            return 0, points, box
        found = named.pop()
        if not float(found).is_integer():
            raise TileSAMError(f"A slice is a whole number, got z={found!r}.")
        return int(found), points, box

    def segment_with_logits(
        self,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        *,
        z: int = 0,
        mask_inputs: Mapping[tuple[int, int], np.ndarray] | None = None,
        multimask: bool | None = None,
        max_tiles: int = 16,
        tight_box: bool = True,
    ) -> tuple[SegmentResult, dict[tuple[int, int], np.ndarray]]:
        """`segment`, also taking and returning the decoder's low-resolution logits per tile.

        `mask_inputs` maps a tile ``(ty, tx)`` to the logits that tile gave before (e.g. on
        the previous slice, which has the same tile grid): the decoder's mask prompt there.
        Returns the result and ``{(ty, tx): logits}`` (a quarter of the model input per side)
        of the chosen mask of every tile predicted; slice-to-slice propagation feeds them to
        the next slice.
        """
        prompt = self.prompt(points, labels, box, mask=mask_inputs)
        options = {"multimask": multimask, "max_tiles": max_tiles, "tight_box": tight_box}
        result, predictions = self._segment(prompt, z=z, **options)
        return result, {tile: p.low_res_logits[p.best] for tile, p in predictions.items()}

    def candidates(
        self, points: Any = None, labels: Any = None, box: Any = None, *, z: int = 0
    ) -> list[SegmentResult]:
        """The model's three alternative masks for a prompt in the tile that holds it (the
        box's centre, else the first positive point), best first, as
        :class:`SegmentResult` s in image coordinates."""
        prompt = self.prompt(points, labels, box)
        self._check_z(z)
        tile = self.grid.tile_for_point(*prompt.anchor)
        in_tile = prompt.within(*self.grid.tile_region(*tile))
        in_tile = in_tile.shifted(*self.grid.tile_origin(*tile))
        pred = self.predictor.predict_prompt(self.embedding(z, *tile), in_tile, multimask=True)
        out = []
        for index in np.argsort(-pred.scores):
            window, offset = merge_tiles(self.grid, {tile: pred.mask(int(index))})
            score = float(pred.scores[index])
            out.append(SegmentResult(window, offset, self.grid.slice_shape, score, z))
        return out

    def prompt(self, points: Any = None, labels: Any = None, box: Any = None, **extra) -> Prompt:
        """`points` (a :class:`~tilesam.decode.prompt.Prompt`, or ``(y, x)`` points with
        `labels` and `box`) checked against a slice of this image."""
        if isinstance(points, Prompt):  # checked again: it may come from another image
            if extra.get("mask") is None:
                extra["mask"] = points.mask
            points, labels, box = points.points, points.labels, points.box
        return Prompt.make(points, labels, box, self.grid.slice_shape, **extra)

    def _segment(
        self, prompt: Prompt, *, z: int, multimask: bool | None, max_tiles: int, tight_box: bool
    ) -> tuple[SegmentResult, dict[tuple[int, int], Prediction]]:
        """The stitched result and each tile's :class:`Prediction` (their logits are only
        upscaled where asked for)."""
        self._check_z(z)
        _positive("max_tiles", max_tiles)
        inputs = prompt.mask or {}
        predictions: dict[tuple[int, int], Prediction] = {}

        def predict(ty, tx, pts, labs, tile_box, mm):
            tile_prompt = Prompt(pts, labs, tile_box, inputs.get((ty, tx)))
            emb = self.embedding(z, ty, tx)
            options = {"tight_box": tight_box}
            pred = self.predictor.predict_prompt(emb, tile_prompt, mm, **options)
            predictions[(ty, tx)] = pred
            return pred.mask(pred.best), float(pred.scores[pred.best])

        margin = default_margin(self.grid.tile_size, self._card.image_size)
        result = stitch_segment(
            self.grid, predict, prompt, z=z, multimask=multimask, max_tiles=max_tiles, margin=margin
        )
        return without_nodata(result, self.source), predictions

    def close(self) -> None:
        """Release the image file."""
        self.source.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _check_z(self, z: int) -> None:
        n = self.source.n_slices
        if not (isinstance(z, int | np.integer) and 0 <= z < n):
            raise TileSAMError(
                f"Slice z={z!r} does not exist: {self.source.describe()} has {n} slice(s) "
                f"(valid: 0..{n - 1})."
            )

    def _open_store(self, normalisation: dict[str, Any], overwrite: bool, encoding: str):
        sig = cache_signature(self._card, self.grid, self.slice_scale, normalisation, self.source)
        emb_shape, high_res = self._card.embedding_shape, self._card.high_res_shapes
        if self.cache_path is None:
            return MemoryStore(self.grid_shape, emb_shape, high_res), sig
        store = EmbeddingStore.open_or_create(
            self.cache_path,
            signature=sig,
            grid_shape=self.grid_shape,
            embedding_shape=emb_shape,
            overwrite=overwrite,
            high_res_shapes=high_res,
            encoding=encoding,
        )
        return store, sig

    def segment_everything(
        self,
        z: int | None = None,
        mode: str | None = None,
        *,
        points_per_side: int | None = None,
        min_score: float | None = None,
        min_stability: float | None = None,
        min_size: int | None = None,
        progress: bool = False,
        callback: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        **settings: Any,
    ) -> Any:
        """Every object of slice `z` (default: of every slice, linked into 3D objects), with
        no prompt: an :class:`tilesam.automatic.AutoResult` (labels, table). The options and
        the modes (default: the best for the model, :func:`tilesam.automatic.api.default_mode`):
        :func:`tilesam.segment_everything`."""
        import importlib  # automatic/ is the layer above this one: reached only when called

        settings |= {"points_per_side": points_per_side, "min_score": min_score}
        settings |= {"min_stability": min_stability, "min_size": min_size}
        report = {"progress": progress, "callback": callback, "cancel": cancel}
        return importlib.import_module("tilesam.automatic.api").run(
            self, mode, z=z, **report, **settings
        )


def _positive(name: str, value: Any) -> int | None:
    """`value` if None or a positive integer, else one error naming `name` (0 is not "the
    default": a user who typed it meant something).

    >>> _positive("max_tiles", 0)
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: max_tiles must be a positive whole number (or left out), got 0.
    """
    whole = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if value is not None and not (whole and value > 0):
        raise TileSAMError(f"{name} must be a positive whole number (or left out), got {value!r}.")
    return value


def _check_channels(source: ImageSource) -> None:
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


def _stored(path: Path) -> EmbeddingStore | None:
    """The TileSAM cache at `path`, read-only; None where there is none yet (a missing or
    empty folder, or a creation an older TileSAM left unfinished, which is replaced)."""
    return EmbeddingStore.open_existing(path, mode="r")  # raises for anything else


def segment_image(
    image: Any,
    *,
    model: Any = None,
    points: Any = None,
    labels: Any = None,
    box: Any = None,
    z: int | None = None,
) -> SegmentResult:
    """Segment one object of an image given as a path, an array or an ``ImageSource``.

    A thin wrapper over :class:`tilesam.Session` without a cache: tiles are embedded on
    demand, and objects crossing tile borders come back whole. Points are ``(y, x)``,
    labels 1 / 0, the box ``(y0, x0, y1, x1)``; one point alone asks for the model's
    best of three candidate masks. On a volume give ``z`` or ``(z, y, x)`` points.

    Examples
    --------
    >>> from tilesam.samples import load_sample, sample_path
    >>> truth = load_sample("nuclei")[1]
    >>> y, x = np.argwhere(truth == 1).mean(axis=0)
    >>> result = segment_image(sample_path("nuclei"), points=[(y, x)])
    >>> result.mask.shape, set(np.unique(truth[result.mask])) >= {1}
    ((256, 256), True)
    """
    return Session(image, model).segment(points, labels, box, z=z)
