"""`Session`: one image, one model, one embedding cache; prompts in, masks out.

A session ties together the pieces of the large-image path::

    image (any size, 2D or 3D) ──► TileGrid ──► embeddings (zarr cache or memory)
                                                      │
    points / box in image coordinates ──► stitch_segment (tile to tile) ──► SegmentResult

Intensities are normalised with ONE range for the whole image (uint8: as is; a CT window
if one is given; else robust percentiles, of the non-zero voxels for a volume), so a pixel
has the same value in every tile and slice. The range, the model, the tiling and the image's
fingerprint form the cache signature: a cache is never reused for another image, model
or preprocessing. Embeddings are computed up front with `Session.embed` (resumable,
optionally on a dask cluster) or on demand by `Session.embedding` / `Session.segment`.

Tiles are enlarged into the model input as SAM does (the longest side fills it), or at most
``slice_scale`` times (:data:`DEFAULT_SLICE_SCALE` for volumes: their slices are often
small, and enlarged to fill the input they show objects far larger than a model trained on
crops has seen); the magnification is then part of the cache signature.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.cache.embed import MemoryStore, TileIndex, embed_tiles, sample_intensity_range
from tilesam.cache.store import EmbeddingStore
from tilesam.cache.tiling import DEFAULT_HALO, TileGrid
from tilesam.decode.numpy_decoder import DecoderConfig, NumpyDecoder, NumpyPredictor
from tilesam.decode.predictor import ImageEmbedding, MaskPredictor, Prediction
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource, content_signature, open_image
from tilesam.models.preprocess import DEFAULT_PERCENTILES, window_range
from tilesam.models.registry import mask_thresholds
from tilesam.models.weights import file_sha256, model_file
from tilesam.segment.result import Prompt, SegmentResult
from tilesam.segment.stitch import default_margin, stitch_segment

if TYPE_CHECKING:
    from tilesam.cache.distributed import ModelRecipe
    from tilesam.models.sam_model import SamModel

logger = logging.getLogger(__name__)
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
_RECENT = 16  # decoded tile embeddings kept for the next clicks (a stitched object's tiles)
#: A volume's slices are enlarged at most this many times into the model input (see
#: :class:`Session`'s `slice_scale`). SAM's convention enlarges a 160-pixel slice 6.4 times,
#: showing the bundled ``tiny`` (trained on 256-pixel crops) nuclei and organs far larger
#: than any it has seen; measured with ``tiny`` on the sample nuclei: one-click IoU 0.89 /
#: 0.94 / 0.89 / 0.73 / 0.48 at 4 / 3 / 2 / 1.5 / 1 times, 0.16 at SAM's 8 times.
DEFAULT_SLICE_SCALE = 3.0


class Session:
    """Segment a (possibly huge) image interactively from a tiled embedding cache.

    Parameters
    ----------
    image : path, array or ImageSource
        Anything :func:`tilesam.open_image` opens; 2D, 2D RGB, or a volume (``z=``).
    model : str, path or SamModel, optional
        A registry name, a checkpoint file or a loaded model; default: ``load_model()``.
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
        Fixed intensity range; default: percentiles of a strided sample of the whole image
        (of its non-zero voxels for a volume: MR and microscopy stacks are zero-padded).
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
        command line and the napari plugin, so all three share caches):
        :func:`default_slice_scale`, :data:`DEFAULT_SLICE_SCALE` for volumes and SAM's
        convention for 2D images.

    Attributes
    ----------
    predictor : MaskPredictor
        What turns prompts into masks: the loaded model, or a
        :class:`tilesam.decode.numpy_decoder.NumpyPredictor` on the cache's decoder weights.

    Examples
    --------
    >>> s = Session("slide.ome.tif", "vit_b", cache="slide.vit_b.zarr")  # doctest: +SKIP
    >>> s.embed()  # progress bar with time left; resumes if interrupted  # doctest: +SKIP
    >>> r = s.segment(points=[(10240, 5120)])  # doctest: +SKIP
    >>> r.bbox, r.window.shape  # small, even for a 20k x 20k slide  # doctest: +SKIP
    >>> v = Session("ct.nii.gz", "vit_b", "ct.zarr", slice_scale=3.0)  # doctest: +SKIP
    >>> v.slice_scale  # 160 x 160 slices: 3, not 1024 / 160 = 6.4  # doctest: +SKIP
    3.0
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
    ) -> None:
        self.source = open_image(image, axes=axes)
        if isinstance(slice_scale, str) and slice_scale == "auto":
            slice_scale = default_slice_scale(self.source)
        self._max_scale = _check_scale(slice_scale)
        if self.source.n_channels not in (1, 3, 4):
            raise TileSAMError(
                f"{self.source.describe()} has {self.source.n_channels} channels; TileSAM "
                "segments grayscale or RGB(A) images. Select one channel or three first."
            )
        self.cache_path = None if cache is None else Path(cache).expanduser()
        stored = None if overwrite or cache is None else _stored(self.cache_path)
        known = None if stored is None else stored.signature
        self._request = (model, checkpoint, device, trust_checkpoint)
        self._model: SamModel | None = None
        self._recipe: ModelRecipe | None = None
        # A cache made for this model's weights file answers clicks without the model
        # (and without importing torch): it keeps the decoder's weights.
        self._card = _card_from_cache(model, checkpoint, stored)
        if self._card is None:
            self._card = _ModelCard.of(self.model)
        tiling = (known or {}).get("tiling", {})
        # An existing cache's tiling is the default, so that reopening needs no options.
        tile_size = tile_size or tiling.get("tile_size") or self._card.image_size
        halo = halo if halo is not None else tiling.get("halo", DEFAULT_HALO)
        self.grid = TileGrid(self.source.slice_shape, tile_size, halo)
        self.progress = progress
        fixed = _fixed_normalisation(intensity, window)
        self.store, self.signature = self._open_store(fixed, known, overwrite)
        low, high = self.signature["normalisation"]["range"]
        self.intensity = (float(low), float(high))
        self._recent: OrderedDict[TileIndex, ImageEmbedding] = OrderedDict()
        self._meta_by_shape: dict[tuple[int, int], dict[str, tuple[int, int]]] = {}
        self.predictor = self._predictor()

    @property
    def model(self) -> SamModel:
        """The model, loaded on first use when the session opened on a cache whose
        embeddings and decoder answer clicks without it (it is needed to embed tiles)."""
        if self._model is None:
            model, recipe = _resolve_model(*self._request)
            self._check_same_model(model)
            self._model, self._recipe = model, recipe
        return self._model

    def _check_same_model(self, model: SamModel) -> None:
        """Refuse a model loaded later than the session opened (to embed a missing tile)
        that is not the one the cache and its decoder were checked against: its weights
        file changed in between."""
        card = self._card
        if card is None or card.decoder is None:  # opened with the model: checked then
            return
        loaded = _ModelCard.of(model)
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
        if self._model is not None:
            if isinstance(self.store, EmbeddingStore) and self.store.read_decoder() is None:
                weights, config = self._model.decoder_weights()
                try:
                    self.store.write_decoder(weights, config.to_dict())
                except TileSAMError as err:  # the cache serves as it is; sessions load the model
                    logger.warning("%s", err)
            return self._model
        card = self._card
        return NumpyPredictor(
            card.decoder,
            mask_threshold=card.mask_threshold,
            box_mask_threshold=card.box_mask_threshold,
        )

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

    def missing_tiles(self, slices: int | list[int] | None = None) -> list[TileIndex]:
        """Tiles ``(z, ty, tx)`` still to embed, of all slices or only of `slices`."""
        missing = self.store.missing_tiles()
        if slices is None:
            return missing
        wanted = {slices} if isinstance(slices, int | np.integer) else set(slices)
        for z in wanted:
            self._check_z(z)
        return [t for t in missing if t[0] in wanted]

    @property
    def slice_scale(self) -> float | None:
        """The magnification every tile is embedded at (model-input pixels per pixel), or
        None for SAM's convention: the `slice_scale` option, lowered where a tile of the
        grid would fill the model input at less (a large slice is tiled as by SAM, its
        clipped edge tiles padded, not enlarged)."""
        if self._max_scale is None:
            return None
        longest = min(self.grid.tile_size, max(self.grid.slice_shape))
        return min(self._max_scale, self._card.image_size / longest)

    # -- embedding --------------------------------------------------------------------------
    def embed(
        self,
        progress: bool = True,
        slices: int | list[int] | None = None,
        batch_size: int = 4,
        workers: int | None = None,
        scheduler: Any = None,
    ) -> int:
        """Compute the embeddings still missing (all, or of `slices`); returns how many.

        Tiles already in the cache are skipped, so an interrupted run resumes. With
        `workers` (a local dask cluster of that many processes) or `scheduler` (an
        address ``"tcp://host:port"`` or a ``distributed.Client``) the tiles are
        embedded by dask workers, which needs an on-disk `cache`.

        Examples
        --------
        >>> Session("big.tif", cache="big.zarr").embed(workers=4)  # doctest: +SKIP
        """
        tiles = self.missing_tiles(slices)
        if not tiles:
            return 0
        if workers is None and scheduler is None:
            return self.compute_tiles(tiles, batch_size=batch_size, progress=progress)
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
                progress=progress,
                scale=self.slice_scale,
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
    ) -> int:
        """Embed `tiles` ``(z, ty, tx)`` into the cache in this process; returns how many.

        The building block of :meth:`embed` for callers that schedule the work themselves,
        e.g. a GUI embedding batch by batch between checks for cancel.
        """
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
        )

    def embedding(self, z: int, ty: int, tx: int) -> ImageEmbedding:
        """The embedding of tile ``(ty, tx)`` of slice `z`, computed now if missing."""
        key = (int(z), int(ty), int(tx))
        if key in self._recent:
            self._recent.move_to_end(key)
            return self._recent[key]
        self._check_z(z)
        self.grid.tile_region(ty, tx)  # raises for a tile outside the grid
        if not self.store.is_done(*key):
            self.compute_tiles([key], progress=self.progress, desc="embedding (on demand)")
        # Tiles of one shape share their metadata (a function of the shape under the
        # settings the store signs): one read per shape, not a zarr read per tile.
        shape = self.grid.tile_shape(ty, tx)
        meta = self._meta_by_shape.get(shape)
        if meta is None:
            meta = self._meta_by_shape[shape] = self.store.read_meta(*key)
        features = self.store.read_tile(*key).astype(np.float32)[None]
        emb = ImageEmbedding(features, meta["tile_shape"], meta["input_shape"])
        self._recent[key] = emb
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return emb

    # -- segmentation -----------------------------------------------------------------------
    def segment(
        self,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        *,
        z: int = 0,
        multimask: bool | None = None,
        max_tiles: int = 16,
        tight_box: bool = True,
    ) -> SegmentResult:
        """Segment one object from points ``(y, x)`` / a box ``(y0, x0, y1, x1)`` in image
        coordinates of slice `z`.

        The object comes back whole when it crosses tile borders (see
        :mod:`tilesam.segment.stitch`), with at most `max_tiles` tile predictions. `multimask`
        (default: for a single point without a box) picks the best of three candidate
        masks; ``tight_box=False`` for a box not drawn tight around the object (see
        :meth:`tilesam.SamModel.predict`). The result keeps only the window around the mask:
        ``.bbox``, ``.window``, ``.offset``; ``.mask`` builds the full ``(H, W)`` array on
        request.

        Examples
        --------
        >>> r = session.segment(points=[(120, 300)], labels=[1])  # doctest: +SKIP
        >>> r.score, r.bbox, r.crop(r.bbox).sum()  # doctest: +SKIP
        """
        result, _ = self._segment(
            points,
            labels,
            box,
            z=z,
            mask_inputs=None,
            multimask=multimask,
            max_tiles=max_tiles,
            tight_box=tight_box,
        )
        return result

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
        Returns the result and ``{(ty, tx): logits}`` (a quarter of the model input per side,
        256 x 256 for SAM) of the chosen mask of every tile predicted; slice-to-slice
        propagation feeds them to the next slice.

        Examples
        --------
        >>> r, logits = session.segment_with_logits(box=(10, 10, 60, 80), z=4)  # doctest: +SKIP
        >>> r2, _ = session.segment_with_logits(box=r.bbox, z=5,  # doctest: +SKIP
        ...                                     mask_inputs=logits)
        """
        result, predictions = self._segment(
            points,
            labels,
            box,
            z=z,
            mask_inputs=mask_inputs,
            multimask=multimask,
            max_tiles=max_tiles,
            tight_box=tight_box,
        )
        return result, {tile: p.low_res_logits[p.best] for tile, p in predictions.items()}

    def _segment(
        self,
        points: Any,
        labels: Any,
        box: Any,
        *,
        z: int,
        mask_inputs: Mapping[tuple[int, int], np.ndarray] | None,
        multimask: bool | None,
        max_tiles: int,
        tight_box: bool,
    ) -> tuple[SegmentResult, dict[tuple[int, int], Prediction]]:
        """The stitched result and each tile's :class:`Prediction` (their logits are only
        upscaled where asked for)."""
        self._check_z(z)
        prompt = Prompt.make(points, labels, box, self.grid.slice_shape)
        inputs = mask_inputs or {}
        predictions: dict[tuple[int, int], Prediction] = {}

        def predict(ty, tx, pts, labs, tile_box, mm):
            emb = self.embedding(z, ty, tx)
            has_points = len(pts) > 0
            pred = self.predictor.predict(
                emb,
                points=pts if has_points else None,
                labels=labs if has_points else None,
                box=tile_box,
                mask_input=inputs.get((ty, tx)),
                multimask=mm,
                tight_box=tight_box,
            )
            predictions[(ty, tx)] = pred
            return pred.mask(pred.best), float(pred.scores[pred.best])

        margin = default_margin(self.grid.tile_size, self._card.image_size)
        result = stitch_segment(
            self.grid, predict, prompt, z=z, multimask=multimask, max_tiles=max_tiles, margin=margin
        )
        return result, predictions

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

    def _open_store(self, fixed, known: dict[str, Any] | None, overwrite: bool):
        emb_shape = self._card.embedding_shape
        if self.cache_path is None:
            sig = self._signature(fixed or self._normalisation(None))
            return MemoryStore(self.grid_shape, emb_shape), sig
        # Reuse the cached range (same image, same method) rather than re-reading the
        # whole image: the content signature identifies the image.
        norm = fixed or self._normalisation((known or {}).get("normalisation"))
        sig = self._signature(norm)
        store = EmbeddingStore.open_or_create(
            self.cache_path,
            signature=sig,
            grid_shape=self.grid_shape,
            embedding_shape=emb_shape,
            overwrite=overwrite,
        )
        return store, sig

    def _signature(self, normalisation: dict[str, Any]) -> dict[str, Any]:
        m, src = self._card, self.source
        tiling: dict[str, Any] = {"tile_size": self.grid.tile_size, "halo": self.grid.halo}
        # Only when set: caches embedded at SAM's convention keep their signature.
        if self.slice_scale is not None:
            tiling["slice_scale"] = self.slice_scale
        return {
            "model": {
                "name": m.name,
                "weights_sha256": m.weights_hash,
                "encoder": m.encoder,
                "input_size": m.image_size,
            },
            "tiling": tiling,
            "normalisation": normalisation,
            "image": {
                "shape": list(src.shape),
                "dtype": src.dtype.str,
                "axes": src.axes,
                "content": content_signature(src),
            },
        }

    def _normalisation(self, known: dict[str, Any] | None) -> dict[str, Any]:
        """The image's own normalisation (no user range or window), reusing `known`'s range."""
        if self.source.dtype == np.uint8:  # SAM's own input scale: used as is
            return {"method": "uint8", "range": [0.0, 255.0]}
        if self.source.dtype == bool:
            return {"method": "bool", "range": [0.0, 1.0]}
        # Volumes (MR, microscopy stacks) are often zero-padded: zeros would drag the range.
        nonzero = self.source.n_slices > 1
        name = "percentiles-nonzero" if nonzero else "percentiles"
        method = {"method": name, "percentiles": list(DEFAULT_PERCENTILES)}
        if known and "range" in known and all(known.get(k) == v for k, v in method.items()):
            return {**method, "range": list(known["range"])}
        low, high = sample_intensity_range(self.source, DEFAULT_PERCENTILES, nonzero=nonzero)
        return {**method, "range": [low, high]}


def default_slice_scale(source: ImageSource) -> float | None:
    """The `slice_scale` a session over `source` gets by default (``"auto"``):
    :data:`DEFAULT_SLICE_SCALE` for a volume, None (SAM's convention) for a 2D image.

    >>> from tilesam.io import open_image
    >>> default_slice_scale(open_image(np.zeros((4, 64, 64), np.uint8), axes="ZYX"))
    3.0
    """
    return DEFAULT_SLICE_SCALE if source.spatial_ndim == 3 else None


def _check_scale(scale: Any) -> float | None:
    """`scale` as a float, None kept; raises unless a finite positive number."""
    if scale is None:
        return None
    number = isinstance(scale, int | float | np.integer | np.floating) and not isinstance(
        scale, bool
    )
    if not (number and np.isfinite(scale) and scale > 0):
        raise TileSAMError(
            f"slice_scale must be a positive number of model pixels per pixel, None for "
            f"SAM's convention or 'auto', got {scale!r}."
        )
    return float(scale)


@dataclass(frozen=True)
class _ModelCard:
    """What a session needs to know of its model besides running it: the cache signature's
    entries, the embedding shape, the mask thresholds; and, for a session that has not
    loaded the model, the decoder kept in its cache."""

    name: str
    weights_hash: str | None
    encoder: str
    image_size: int
    embedding_shape: tuple[int, int, int]
    mask_threshold: float = 0.0
    box_mask_threshold: float | None = None
    decoder: NumpyDecoder | None = None

    @classmethod
    def of(cls, model: SamModel) -> _ModelCard:
        return cls(
            name=model.name,
            weights_hash=model.weights_hash,
            encoder=model.architecture.encoder,
            image_size=model.image_size,
            embedding_shape=(model.sam.prompt_encoder.embed_dim, *model.grid),
            mask_threshold=model.mask_threshold,
            box_mask_threshold=model.box_mask_threshold,
        )


def _card_from_cache(
    model: Any, checkpoint: Any, stored: EmbeddingStore | None
) -> _ModelCard | None:
    """The card of a model given by name or file whose cache can answer without it: the
    cache was made for exactly that weights file and keeps the decoder; else None (the
    model is loaded, and reports any problem with it)."""
    if stored is None or not (model is None or isinstance(model, str | os.PathLike)):
        return None
    decoder = stored.read_decoder()
    if decoder is None:
        return None
    name, checkpoint = _name_and_checkpoint(model, checkpoint)
    try:
        path, label, entry = model_file(name, checkpoint)
    except TileSAMError:
        return None
    made_for = stored.signature.get("model", {})
    if not path.is_file() or made_for.get("name") != label:
        return None
    if made_for.get("weights_sha256") != file_sha256(path):
        return None
    weights, config = decoder
    try:
        numpy_decoder = NumpyDecoder(weights, DecoderConfig.from_dict(config))
    except (KeyError, TypeError, ValueError, IndexError):
        return None  # weights this version cannot run: the model decodes instead
    mask_threshold, box_mask_threshold = mask_thresholds(entry, made_for["encoder"])
    return _ModelCard(
        name=label,
        weights_hash=made_for["weights_sha256"],
        encoder=made_for["encoder"],
        image_size=int(made_for["input_size"]),
        embedding_shape=stored.embedding_shape,
        mask_threshold=mask_threshold,
        box_mask_threshold=box_mask_threshold,
        decoder=numpy_decoder,
    )


def _name_and_checkpoint(model: Any, checkpoint: Any) -> tuple[str | None, Any]:
    """`load_model`'s name and checkpoint for a session's `model` (a registry name or a
    checkpoint file) and `checkpoint` arguments."""
    if model is None:
        return None, checkpoint
    if not isinstance(model, str | os.PathLike):
        raise TileSAMError(
            f"model must be a registry name, a checkpoint path or a SamModel, got "
            f"{type(model).__name__}."
        )
    path = Path(model).expanduser()
    if checkpoint is None and (path.is_file() or path.suffix.lower() in _CHECKPOINT_SUFFIXES):
        return None, path
    return os.fspath(model), checkpoint


def _resolve_model(model, checkpoint, device, trust: bool) -> tuple[SamModel, ModelRecipe | None]:
    """The model, and how dask workers rebuild it (None: from the driver's weights)."""
    if _is_loaded_model(model):
        return model, None
    from tilesam.cache.distributed import ModelRecipe
    from tilesam.models.loading import load_model

    name, checkpoint = _name_and_checkpoint(model, checkpoint)
    loaded = load_model(name, checkpoint, device, trust_checkpoint=trust)
    ckpt = None if checkpoint is None else os.fspath(Path(checkpoint).expanduser().absolute())
    recipe = ModelRecipe(
        name=name, checkpoint=ckpt, device=str(loaded.device), trust_checkpoint=trust
    )
    return loaded, recipe


def _is_loaded_model(model: Any) -> bool:
    # A SamModel exists only once tilesam.models.sam_model (and torch) is imported: no
    # import to check.
    module = sys.modules.get("tilesam.models.sam_model")
    return module is not None and isinstance(model, module.SamModel)


def _stored(path: Path) -> EmbeddingStore | None:
    """The TileSAM cache at `path`, read-only; None for a missing or empty folder."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    return EmbeddingStore.open(path, mode="r")  # raises for anything else


def _fixed_normalisation(intensity, window) -> dict[str, Any] | None:
    """The signature's normalisation entry for a user range or a CT window; None for neither.

    >>> _fixed_normalisation(None, "lung")
    {'method': 'window', 'window': 'lung', 'range': [-1350.0, 150.0]}
    """
    if intensity is not None and window is not None:
        raise TileSAMError(
            "Give either intensity=(low, high) or a CT window=, not both: both set the "
            "intensity range sent to the encoder."
        )
    if intensity is not None:
        return {"method": "user", "range": list(_check_range(intensity))}
    if window is None:
        return None
    low, high = window_range(window)
    name = window if isinstance(window, str) else [float(v) for v in window]
    return {"method": "window", "window": name, "range": [low, high]}


def _check_range(intensity) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in intensity)
    except (TypeError, ValueError):
        raise TileSAMError(f"intensity must be (low, high), got {intensity!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise TileSAMError(f"intensity (low, high) needs finite low < high, got {intensity!r}.")
    return low, high


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
    best of three candidate masks. A volume needs ``z``.

    Examples
    --------
    >>> model = load_model()  # doctest: +SKIP
    >>> result = segment_image("nuclei.tif", model=model, points=[(120, 80)])  # doctest: +SKIP
    >>> result.mask.shape, result.score  # doctest: +SKIP
    """
    session = Session(image, model)
    if z is None:
        if session.source.n_slices != 1:
            raise TileSAMError(
                f"{session.source.describe()} is a volume of {session.source.n_slices} "
                "slices: pass z= to segment one slice, or use the 3D propagation."
            )
        z = 0
    return session.segment(points, labels, box, z=z)
