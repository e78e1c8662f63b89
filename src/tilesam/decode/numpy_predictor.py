"""`NumpyPredictor`: prompts answered on cached embeddings by the NumPy decoder, without torch.

The same prompts, windows and masks as :meth:`tilesam.SamModel.predict`, for embeddings
already computed (:mod:`tilesam.decode.numpy_decoder` says why a decoder in NumPy); it keeps
the decoder's image side of the last few embeddings for the next prompts on them
(:mod:`tilesam.decode.reuse`).
"""

from __future__ import annotations

import numpy as np

from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.logits import MaskLogits
from tilesam.decode.numpy_decoder import ImageSide, NumpyDecoder
from tilesam.decode.predictor import MaskPredictor
from tilesam.decode.reuse import PrepareOnReuse
from tilesam.decode.sam_prompt import SamPrompt

__all__ = ["NumpyPredictor"]

#: The decode of the same features at which their image side is prepared: preparing a 64 x 64
#: grid costs about 7 ms and saves 2.9-3.8 ms a decode (this project's CPU, one thread).
PREPARE_AT_USE = 3


class NumpyPredictor(MaskPredictor):
    """:meth:`tilesam.SamModel.predict` with the decoder in NumPy (see :class:`NumpyDecoder`):
    the same prompts, windows and masks, for embeddings already computed.

    Examples
    --------
    >>> import tilesam
    >>> from tilesam.decode.embedding import ImageEmbedding
    >>> from tilesam.samples import load_sample
    >>> model = tilesam.load_model()
    >>> thresholds = {"mask_threshold": model.mask_threshold}
    >>> predictor = NumpyPredictor(NumpyDecoder(*model.decoder_weights()), **thresholds)
    >>> emb = model.embed(load_sample("nuclei")[0])
    >>> cached = ImageEmbedding(emb.features.numpy(), emb.original_size, emb.input_size)
    >>> ours, torch_mask = predictor.predict(cached, points=[(120, 200)]), model.predict(
    ...     emb, points=[(120, 200)])
    >>> bool(abs(ours.scores - torch_mask.scores).max() < 1e-3)  # the same decoder
    True
    """

    def __init__(
        self,
        decoder: NumpyDecoder,
        *,
        mask_threshold: float = 0.0,
        box_mask_threshold: float | None = None,
    ) -> None:
        self.decoder = decoder
        self.image_size = decoder.config.image_size
        self.grid = decoder.config.grid
        self.decoder_windows = decoder.config.decoder_windows
        self.mask_threshold = mask_threshold
        self.box_mask_threshold = box_mask_threshold
        self._reuse: PrepareOnReuse[ImageSide] = PrepareOnReuse(at_use=PREPARE_AT_USE)

    def _decode(
        self, embedding: ImageEmbedding, prompt: SamPrompt, window: tuple[int, int, int, int] | None
    ) -> tuple[np.ndarray, MaskLogits]:
        points = None if prompt.coords is None else (prompt.coords, prompt.labels)
        tokens, hyper_in, iou = self.decoder.decode_tokens(
            None,
            None,
            points=points,
            box=prompt.box,
            multimask=prompt.multimask,
            image=self._image(embedding, prompt.mask, window),
        )

        def upscale(rows: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
            return self.decoder.upscale_masks(rows, hyper_in, hw)

        extent = None if window is None else self._extent(embedding)
        logits = MaskLogits(
            upscale, tokens, len(hyper_in), self.grid, decoded=window, extent=extent
        )
        return iou, logits

    def _image(
        self,
        embedding: ImageEmbedding,
        mask: np.ndarray | None,
        window: tuple[int, int, int, int] | None,
    ) -> ImageSide:
        """The decoder's image side of `embedding` on `window` (None: the whole grid);
        without a mask input, kept for the next prompts on the same features and prepared
        once they have come often (see :mod:`tilesam.decode.reuse`)."""
        if mask is not None:
            return self._image_side(embedding, mask, window)
        return self._reuse.get(
            embedding.features,
            lambda: self._image_side(embedding, None, window),
            self.decoder.prepared,
            key=window,
        )

    def _image_side(
        self,
        embedding: ImageEmbedding,
        mask: np.ndarray | None,
        window: tuple[int, int, int, int] | None,
    ) -> ImageSide:
        features = np.asarray(embedding.features, dtype=np.float32)[0]
        pe = self.decoder.dense_pe()
        if window is not None:
            y0, y1, x0, x1 = window
            features, pe = features[:, y0:y1, x0:x1], pe[:, y0:y1, x0:x1]
            mask = None if mask is None else mask[4 * y0 : 4 * y1, 4 * x0 : 4 * x1]
        return self.decoder.image_side(features, pe, mask)
