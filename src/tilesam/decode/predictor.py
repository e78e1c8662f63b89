"""From prompts to masks on an embedding: what every SAM-family decoder shares.

Coordinates are array-index order: points ``(y, x)``, boxes ``(y0, x0, y1, x1)`` end-exclusive,
in pixels of the original image; only the decoders speak SAM's ``(x, y)`` of the model input.
:class:`MaskPredictor` turns a prompt into SAM's arguments, picks the windows of the token grid
a decoder trained on windows runs on, and makes masks from the logits; its subclasses run the
decoder (:class:`tilesam.SamModel` with torch,
:class:`tilesam.decode.numpy_predictor.NumpyPredictor` with NumPy on weights a cache keeps).
Nothing here imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.isolate import keep_prompted
from tilesam.decode.logits import MaskLogits, prompted_window
from tilesam.decode.prompt import Prompt
from tilesam.decode.sam_prompt import SamPrompt, to_sam_prompt
from tilesam.decode.upsample import box_mask, confined_to_box, in_cells, upsample_mask
from tilesam.errors import TileSAMError

# Tokens a decoding window keeps around the prompt's marks on each side, at least.
_DECODER_WINDOW_PAD = 4


@dataclass
class Prediction:
    """Masks for one prompt: ``scores`` ``(M,)`` predicted IoU, ``low_res_logits``
    ``(M, 256, 256)``; logits and full-resolution masks are computed when asked for.

    With the ``prompt`` kept to (its positive points and box), full-resolution masks keep
    only the parts the prompt touches (:func:`tilesam.decode.isolate.keep_prompted`); then only
    the logits around those parts are computed. ``low_res_logits`` are the decoder's own
    either way; for a prompt decoded on a window of the grid (``Sam.decoder_windows``) they
    are ``OUTSIDE_LOGIT`` outside it.
    """

    scores: np.ndarray
    logits: MaskLogits = field(repr=False)
    embedding: ImageEmbedding = field(repr=False)
    threshold: float = 0.0
    prompt: Prompt | None = field(default=None, repr=False)

    @property
    def best(self) -> int:
        """Index of the mask with the highest predicted IoU."""
        return int(np.argmax(self.scores))

    @cached_property
    def low_res_logits(self) -> np.ndarray:
        """The decoder's logits of every mask on the whole low-resolution grid
        (``OUTSIDE_LOGIT`` outside the window decoded, if any)."""
        return self.logits.full()

    @cached_property
    def masks(self) -> np.ndarray:
        """All masks at the original resolution, ``(M, H, W)`` bool."""
        return np.stack([self.mask(i) for i in range(len(self.scores))])

    def mask(self, index: int | None = None) -> np.ndarray:
        """One mask (the best by default) at the original resolution, ``(H, W)`` bool."""
        index = self.best if index is None else index
        emb = self.embedding
        prompt = self.prompt
        if prompt is not None and confined_to_box(prompt, emb.original_size):
            sizes = (emb.input_size, emb.original_size)
            mask = box_mask(self.logits, index, prompt, *sizes, self.threshold)
            if mask is not None:
                return mask
        if prompt is None or not prompt.has_object or self.logits.has_full:
            window, origin = self.low_res_logits[index], (0, 0)
        else:
            cells = in_cells(prompt, emb.input_size, emb.original_size)
            window, origin = prompted_window(self.logits, index, cells, self.threshold)
        return upsample_mask(
            window,
            emb.input_size,
            emb.original_size,
            self.threshold,
            prompt=prompt,
            origin=origin,
            grid_shape=self.logits.shape,
        )


class MaskPredictor(ABC):
    """Masks from prompts on embeddings; subclasses run the decoder (:meth:`_decode`).

    Subclasses set ``image_size`` (the model input side), ``grid`` (the embedding's
    ``(h, w)`` tokens), ``decoder_windows`` (see ``Sam.decoder_windows``),
    ``mask_threshold`` and ``box_mask_threshold`` (see ``ModelEntry``).
    """

    image_size: int
    grid: tuple[int, int]
    decoder_windows: tuple[int, ...]
    mask_threshold: float
    box_mask_threshold: float | None

    @abstractmethod
    def _decode(
        self, embedding: ImageEmbedding, prompt: SamPrompt, window: tuple[int, int, int, int] | None
    ) -> tuple[np.ndarray, MaskLogits]:
        """Scores ``(M,)`` and logits of `prompt` decoded on `window` ``(y0, y1, x0, x1)`` of
        the token grid (None: the whole grid)."""

    def predict(
        self,
        embedding: ImageEmbedding,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
        keep_prompted: bool = True,
        tight_box: bool = True,
    ) -> Prediction:
        """Masks for a prompt: positive/negative ``points`` ``(y, x)`` with ``labels`` 1/0, a
        ``box`` ``(y0, x0, y1, x1)``, and/or ``mask_input``, the ``(256, 256)`` low-res logits of
        an earlier prediction. ``multimask`` returns three alternatives for ambiguous prompts.

        With ``keep_prompted`` (the default) the full-resolution masks keep only the parts
        connected to a positive point or overlapping the box, clipped to the box (see
        :mod:`tilesam.decode.isolate`); ``False`` gives the decoder's masks as they are, like the
        official SAM code. ``tight_box=False`` says the box is not drawn tight around the
        object (e.g. a mask's box grown for the next slice): its mask then uses the model's
        point threshold, not its box threshold (see :meth:`_threshold`).
        """
        prompt = Prompt.make(
            points, labels, box, embedding.original_size, mask=mask_input, needs_object=False
        )
        return self.predict_prompt(
            embedding, prompt, multimask, keep_prompted=keep_prompted, tight_box=tight_box
        )

    def predict_prompt(
        self,
        embedding: ImageEmbedding,
        prompt: Prompt,
        multimask: bool = True,
        *,
        keep_prompted: bool = True,
        tight_box: bool = True,
    ) -> Prediction:
        """:meth:`predict` for a checked :class:`~tilesam.decode.prompt.Prompt` (its `mask`,
        if any, is the decoder's mask input)."""
        sam = to_sam_prompt(prompt, embedding, multimask, self._mask_prompt(prompt.mask))
        threshold = self._threshold(prompt.box is not None and keep_prompted and tight_box)
        kept = prompt if keep_prompted else None
        for window in self._decoder_windows(sam):
            scores, logits = self._decode(embedding, sam, window)
            if not _reaches_edge(logits, scores, embedding, kept, threshold):
                return Prediction(scores, logits, embedding, threshold, kept)
        scores, logits = self._decode(embedding, sam, None)
        return Prediction(scores, logits, embedding, threshold, kept)

    def _decoder_windows(self, prompt: SamPrompt) -> list[tuple[int, int, int, int]]:
        """The windows of tokens ``(y0, y1, x0, x1)`` to decode a prompt on, in turn, for a
        model trained on windows of the grid (``Sam.decoder_windows``), each centred on the
        prompt's marks; a mask that reaches a window's edge is decoded on the next, then on
        the whole grid. No windows (the whole grid at once) for other models and for prompts
        wider than every window.

        A prompt with a box starts on the smallest window that holds it: the box tells the
        object's size. Points alone do not, and start on the largest (validation, 280
        nuclei: one click on the smallest lost 0.015 IoU; a box gained 0.008).
        """
        if not self.decoder_windows or prompt.coords is None and prompt.box is None:
            return []
        marks = [] if prompt.coords is None else [prompt.coords]
        if prompt.box is not None:
            marks.append(prompt.box.reshape(2, 2))
        grid = np.array(self.grid)
        xy = np.concatenate(marks) * grid[::-1] / self.image_size  # (x, y) in tokens
        lo, hi = xy.min(axis=0)[::-1], xy.max(axis=0)[::-1]
        sides = window_sides(
            self.decoder_windows, min(self.grid), hi - lo, box=prompt.box is not None
        )
        return [centred_window(lo, hi, side, grid) for side in sides]

    def _extent(self, embedding: ImageEmbedding) -> tuple[int, int]:
        """The tokens of the grid that hold image, ``(rows, cols)``; the rest is padding."""
        token = self.image_size / self.grid[0]
        rows, cols = (int(np.ceil(n / token)) for n in embedding.input_size)
        return rows, cols

    def _threshold(self, has_box: bool) -> float:
        """The mask threshold for a prompt (see ``ModelEntry.box_mask_threshold``: it assumes
        the mask is clipped to the box, as ``keep_prompted`` does)."""
        box_threshold = self.box_mask_threshold
        return box_threshold if has_box and box_threshold is not None else self.mask_threshold

    def _mask_prompt(self, mask_input) -> np.ndarray | None:
        if mask_input is None:
            return None
        mask = np.asarray(mask_input, dtype=np.float32)
        expected = (4 * self.grid[0], 4 * self.grid[1])
        if mask.shape[-2:] != expected or mask.size != expected[0] * expected[1]:
            raise TileSAMError(
                f"mask_input must be low-res logits of shape {expected} (an earlier "
                f"prediction's low_res_logits[i]), got {mask.shape}."
            )
        return mask.reshape(expected)


def window_sides(
    windows: Sequence[int], grid: int, extent: float | np.ndarray, *, box: bool
) -> list[int]:
    """The sides, in tokens, of the windows a prompt whose marks span `extent` tokens (one
    number, or one per axis) is decoded on, in turn (see :meth:`MaskPredictor.predict`), for
    a decoder trained on `windows` (``Sam.decoder_windows``) of a `grid` tokens a side: with
    a box every window that holds it, smallest first; points alone the largest. Empty: the
    whole grid at once."""
    sides = [side for side in windows if side < grid]
    candidates = sides if box else sides[-1:]
    return [s for s in candidates if np.all(np.asarray(extent) + 2 * _DECODER_WINDOW_PAD <= s)]


def centred_window(
    lo: np.ndarray, hi: np.ndarray, side: int, grid: Sequence[int]
) -> tuple[int, int, int, int]:
    """The window ``(y0, y1, x0, x1)`` of `side` tokens centred on marks that span `lo` to
    `hi` (``(y, x)`` in tokens), moved inside the `grid` of tokens where it would leave it.

    Centred on the prompt, even where that takes in padding: pushed inside the image
    against its edge, windows lost accuracy on objects cut by that edge (validation:
    one-point IoU 0.695 against 0.704 centred, 0.717 on the whole grid).
    """
    lo = np.asarray(lo, dtype=float)
    start = np.clip(np.round((lo + hi - side) / 2), 0, np.asarray(grid) - side).astype(int)
    return int(start[0]), int(start[0] + side), int(start[1]), int(start[1] + side)


def _reaches_edge(
    logits: MaskLogits,
    scores: np.ndarray,
    embedding: ImageEmbedding,
    prompt: Prompt | None,
    threshold: float,
) -> bool:
    """Whether a mask decoded on a window of the grid may go on beyond it: some candidate's
    final mask (its kept part, clipped to the box) reaches the window's outermost tokens on
    a side where the image goes on.

    Only candidates with logits above the threshold on those tokens are looked at, each on
    the window :func:`prompted_window` finds for its kept part (for a small object a few
    tokens around the prompt rather than the whole decoded window).
    """
    candidates = np.flatnonzero(logits.edge_positive(threshold))
    if not candidates.size:
        return False
    # The best last: its window stays cached for the mask that Prediction.mask then makes.
    candidates = candidates[np.argsort(scores[candidates], kind="stable")]
    y0, y1, x0, x1 = logits.decoded
    top, bottom, left, right = logits.open_sides()
    select = prompt is not None and prompt.has_object
    if select:
        cells = in_cells(prompt, embedding.input_size, embedding.original_size)
    for index in candidates:
        if select:
            values, origin = prompted_window(logits, index, cells, threshold)
            positive = keep_prompted(values > threshold, cells.shifted(*origin))
        else:
            values, origin = logits.window(y0, y1, x0, x1)[index], (4 * y0, 4 * x0)
            positive = values > threshold
        rows, cols = np.nonzero(positive)
        rows, cols = rows + origin[0], cols + origin[1]  # cells of the whole grid
        if (
            (top and (rows < 4 * y0 + 4).any())
            or (bottom and (rows >= 4 * y1 - 4).any())
            or (left and (cols < 4 * x0 + 4).any())
            or (right and (cols >= 4 * x1 - 4).any())
        ):
            return True
    return False
