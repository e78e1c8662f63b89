"""`Sam2Model`: SAM 2.1 behind the same ``embed`` / ``predict`` API as :class:`SamModel`.

What differs from SAM is kept here: the input is resized to the square model input without
keeping the aspect ratio (as the official ``SAM2ImagePredictor``), the embedding carries the
two high-resolution feature maps the decoder adds while upscaling, and the decoder's logits
are computed on the whole grid at once (see :func:`_whole_grid_logits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tilesam.decode import isolate
from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.logits import MaskLogits
from tilesam.decode.predictor import Prediction
from tilesam.decode.prompt import Prompt
from tilesam.decode.sam_prompt import SamPrompt
from tilesam.errors import TileSAMError
from tilesam.models.card import ModelCard
from tilesam.models.preprocess import prepare_image
from tilesam.models.registry import Architecture
from tilesam.models.sam2 import Sam2
from tilesam.models.sam_model import SamModel

__all__ = ["Sam2Embedding", "Sam2Model", "Sam2Prediction"]

# The official image predictor clamps the low-res logits it returns (and that a later
# prompt feeds back as its mask input) to this range.
_LOGIT_CLAMP = 32.0


@dataclass(frozen=True)
class Sam2Embedding(ImageEmbedding):
    """An :class:`ImageEmbedding` with SAM 2's high-resolution features.

    ``high_res_features`` is ``(feat_s0, feat_s1)``: ``(1, 32, 4h, 4w)`` and
    ``(1, 64, 2h, 2w)`` for the ``(1, 256, h, w)`` ``features``, already projected by the
    decoder's ``conv_s0`` / ``conv_s1``. ``input_size`` is the square model input: SAM 2
    resizes each image to it whatever its aspect ratio.
    """

    high_res_features: tuple[Any, Any] | None = None


class Sam2Model(SamModel):
    """A SAM 2.1 model ready for use: ``embed`` images, ``predict`` masks from prompts.

    Build one with :func:`tilesam.load_model` (``"sam2.1_hiera_tiny"``, ... or a SAM 2.1
    checkpoint). Prompts and results are those of :class:`SamModel`; ``embed`` returns a
    :class:`Sam2Embedding`. Tracking through frames:
    :class:`tilesam.models.sam2_tracker.Sam2Tracker`.
    """

    #: SAM 2's decoder also takes the high-resolution features, which SAM's batched click
    #: decoding does not carry: its clicks go one at a time.
    batches_clicks = False

    def __init__(
        self,
        sam: Sam2,
        *,
        name: str,
        architecture: Architecture,
        weights_hash: str | None = None,
        device: str | torch.device = "cpu",
        mask_threshold: float = 0.0,
        box_mask_threshold: float | None = None,
        precision: str = "auto",
    ) -> None:
        # No traced decoder graphs: they trace Sam.decode_tokens, and SAM 2's decoder also needs
        # the encoder's high-resolution features, which that signature does not carry.
        super().__init__(
            sam,
            name=name,
            architecture=architecture,
            weights_hash=weights_hash,
            device=device,
            decoder_graphs=False,
            mask_threshold=mask_threshold,
            box_mask_threshold=box_mask_threshold,
            precision=precision,
        )

    def _prepare(
        self, image: np.ndarray, intensity: tuple[float, float] | None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        return prepare_image(image, self.image_size, intensity, square=True)

    @torch.inference_mode()
    def _embeddings(
        self, pixels: torch.Tensor, sizes: Sequence[tuple[int, int]]
    ) -> list[ImageEmbedding]:
        x = self.sam.preprocess(pixels)
        with self.autocast():
            features = self.sam.encode(x)
        embedding, feat_s0, feat_s1 = (f.float() for f in features)
        input_size = (self.image_size, self.image_size)
        return [
            Sam2Embedding(
                embedding[i : i + 1],
                original_size=size,
                input_size=input_size,
                high_res_features=(feat_s0[i : i + 1], feat_s1[i : i + 1]),
            )
            for i, size in enumerate(sizes)
        ]

    @property
    def card(self) -> ModelCard:
        """:attr:`SamModel.card`, with the shapes of the high-resolution features."""
        h, w = self.grid
        decoder = self.sam.sam_mask_decoder
        shapes = (
            (decoder.conv_s0.out_channels, 4 * h, 4 * w),
            (decoder.conv_s1.out_channels, 2 * h, 2 * w),
        )
        return dataclasses.replace(super().card, high_res_shapes=shapes)

    def decoder_weights(self) -> tuple[dict[str, np.ndarray], Any]:
        """Not for SAM 2 yet: the NumPy decoder runs SAM's decoder only."""
        raise TileSAMError(
            f"{self.name!r} is a SAM 2.1 model: TileSAM's NumPy decoder does not run SAM 2's "
            "mask decoder yet. Keep the model loaded (torch) to decode its prompts."
        )

    @torch.inference_mode()
    def _decode(
        self, embedding: ImageEmbedding, prompt: SamPrompt, window: tuple[int, int, int, int] | None
    ) -> tuple[np.ndarray, MaskLogits]:
        """Decode on the whole grid (`window` is always None: SAM 2 has no decoder windows)."""
        high_res = self._high_res(embedding)
        args = self._torch_prompt(prompt)
        mask = args.pop("mask_input")
        features = embedding.features
        image = self._image_tokens(features) if mask is None else self._on_device(features)
        logits, iou, _ = self.sam.decode(
            image, high_res, mask_input=mask, image_pe=self.image_pe, **args
        )
        logits = logits[0].clamp(-_LOGIT_CLAMP, _LOGIT_CLAMP).float().cpu().numpy()
        return iou[0].float().cpu().numpy(), _whole_grid_logits(logits)

    def predict_prompt(
        self,
        embedding: ImageEmbedding,
        prompt: Prompt,
        multimask: bool = True,
        *,
        keep_prompted: bool = True,
        tight_box: bool = True,
    ) -> Prediction:
        """:meth:`SamModel.predict_prompt`, its masks resized as SAM 2 resizes them."""
        result = super().predict_prompt(
            embedding, prompt, multimask, keep_prompted=keep_prompted, tight_box=tight_box
        )
        return Sam2Prediction(**{f.name: getattr(result, f.name) for f in fields(result)})

    def _high_res(self, embedding: ImageEmbedding) -> tuple[torch.Tensor, torch.Tensor]:
        high_res = getattr(embedding, "high_res_features", None)
        if high_res is None:
            raise TileSAMError(
                f"{self.name!r} is a SAM 2.1 model: it decodes with the image's "
                "high-resolution features as well as its embedding, and this embedding has "
                "none (made by another model, or read from a cache that keeps the embedding "
                "only). Embed the image with this model (model.embed(image))."
            )
        return tuple(self._on_device(f) for f in high_res)


@dataclass
class Sam2Prediction(Prediction):
    """A :class:`Prediction` whose full-resolution masks are resized from the low-res logits
    in one bilinear step, as SAM 2 does (SAM goes through the padded model input first; for
    SAM 2's square input without padding the two disagree on up to 1 % of the fixture's pixels)."""

    def mask(self, index: int | None = None) -> np.ndarray:
        """One mask (the best by default) at the original resolution, ``(H, W)`` bool.

        An embedding that covers only part of the model input (a cache's edge tile, padded
        to its canvas: :mod:`tilesam.cache.canvas`) has its mask cut out of the input's as
        SAM's are (:meth:`Prediction.mask`)."""
        index = self.best if index is None else index
        rows, cols = self.logits.shape
        if tuple(self.embedding.input_size) != (4 * rows, 4 * cols):
            return super().mask(index)
        low_res = torch.from_numpy(np.ascontiguousarray(self.low_res_logits[index]))
        full = F.interpolate(
            low_res[None, None], self.embedding.original_size, mode="bilinear", align_corners=False
        )
        mask = full[0, 0].numpy() > self.threshold
        prompt = self.prompt
        if prompt is not None and prompt.has_object:
            mask = isolate.keep_prompted(mask, prompt)
        return mask


def _whole_grid_logits(logits: np.ndarray) -> MaskLogits:
    """Logits ``(M, 4h, 4w)`` computed on the whole grid, served as :class:`MaskLogits`.

    SAM 2's upscaling adds high-resolution features that :class:`MaskLogits` cannot carry
    per token, so the decoder upscales every token at once (a few milliseconds); each
    token's "features" are then its ``M x 4 x 4`` cells, and upscaling a window only puts
    them in place.
    """
    m, rows, cols = logits.shape
    h, w = rows // 4, cols // 4
    cells = logits.reshape(m, h, 4, w, 4).transpose(1, 3, 0, 2, 4).reshape(h * w, m * 16)

    def place(tokens: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        th, tw = hw
        out = tokens.reshape(th, tw, m, 4, 4).transpose(2, 0, 3, 1, 4)
        return np.ascontiguousarray(out.reshape(m, 4 * th, 4 * tw))

    return MaskLogits(place, cells, m, (h, w))
