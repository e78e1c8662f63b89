"""`Session`: one image, one model, one embedding cache; prompts in, masks out.

A session ties together the pieces of the large-image path::

    image (any size, 2D or 3D) ──► TileGrid ──► embeddings (zarr cache or memory)
                                                      │
    points / box in image coordinates ──► stitch_segment (tile to tile) ──► SegmentResult

Opening the image, the model and the cache, and embedding the tiles, is the half a
session inherits (:mod:`tilesam.segment.embedding_session`), with its policies beside it:
one intensity range per image (:mod:`tilesam.cache.normalisation`), the slice scale of
volumes (:mod:`tilesam.cache.scale`), the cache signature (:mod:`tilesam.cache.signature`),
the model or the cache's own decoder (:mod:`tilesam.segment.model_source`). A cache opens
the same from every face: without options a session takes an existing cache's model,
tiling, magnification and intensity range; asking for others is refused with the way out
(:mod:`tilesam.segment.opening`). Embeddings are computed up front with `Session.embed`
(resumable, with progress and cancel, optionally on a dask cluster) or on demand by
`Session.segment`, whose prompt is made by :mod:`tilesam.segment.prompt_input` (slices,
map coordinates) and answered tile by tile by :mod:`tilesam.segment.tile_prediction`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tilesam.cache.progress import CancelFlag, ProgressCallback
from tilesam.decode.predictor import Prediction
from tilesam.decode.prompt import Prompt
from tilesam.segment import opening, prompt_input
from tilesam.segment.embedding_session import EmbeddingSession
from tilesam.segment.result import SegmentResult, without_nodata
from tilesam.segment.stitch import default_margin
from tilesam.segment.tile_prediction import segment_tiles, tile_candidates

# Session is the one object users hold. Opening and embedding are its base's
# (EmbeddingSession); here are the prompts, each method a thin door to the modules beside
# it; most of the length is the docstrings' runnable examples.


class Session(EmbeddingSession):
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
    checkpoint, device, trust_checkpoint, precision
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
        :class:`tilesam.decode.numpy_predictor.NumpyPredictor` on the cache's decoder weights.

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
        embed_missing: bool = True,
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

        Tiles not in the cache yet are embedded on the way; with ``embed_missing=False``
        none is (the answer comes in the decoder's time, e.g. in a GUI's event loop): the
        object stops at them and ``.waiting`` lists them, to segment again once they are.

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
            on_map, shape = (points_xy, box_xy, crs), self.grid.slice_shape
            points, labels, box = prompt_input.from_map(self.source, shape, points, box, *on_map)
        z, points, box = prompt_input.slice_of(self.source, z, points, box)
        prompt = self.prompt(points, labels, box)
        options = {"multimask": multimask, "max_tiles": max_tiles, "tight_box": tight_box}
        return self._segment(prompt, z=z, embed_missing=embed_missing, **options)[0]

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
        prompt_input.check_z(self.source, z)
        return tile_candidates(self.grid, self.embedding, self.predictor, prompt, z)

    def prompt(self, points: Any = None, labels: Any = None, box: Any = None, **extra) -> Prompt:
        """`points` (a :class:`~tilesam.decode.prompt.Prompt`, or ``(y, x)`` points with
        `labels` and `box`) checked against a slice of this image."""
        return prompt_input.checked_prompt(points, labels, box, self.grid.slice_shape, **extra)

    def _segment(
        self,
        prompt: Prompt,
        *,
        z: int,
        multimask: bool | None,
        max_tiles: int,
        tight_box: bool,
        embed_missing: bool = True,
    ) -> tuple[SegmentResult, dict[tuple[int, int], Prediction]]:
        """The stitched result and each tile's :class:`Prediction` (their logits are only
        upscaled where asked for)."""
        prompt_input.check_z(self.source, z)
        opening.positive("max_tiles", max_tiles)
        margin = default_margin(self.grid.tile_size, self._card.image_size)
        options = {"multimask": multimask, "max_tiles": max_tiles, "tight_box": tight_box}
        embedded = None if embed_missing else self.store.is_done
        result, predictions = segment_tiles(
            self.grid, self.embedding, self.predictor, prompt, z=z, margin=margin,
            embedded=embedded, **options,
        )  # fmt: skip
        return without_nodata(result, self.source), predictions

    def close(self) -> None:
        """Release the image file and the cache (another process may replace it from then
        on, and its disk be unmounted); ``with Session(...) as session:`` does it at the end."""
        try:
            self.source.close()
        finally:
            self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
