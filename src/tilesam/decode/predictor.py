"""From prompts to masks on an embedding: what every SAM-family decoder shares.

Coordinates are array-index order: points ``(y, x)``, boxes ``(y0, x0, y1, x1)`` end-exclusive,
in pixels of the original image; only the decoders speak SAM's ``(x, y)`` of the model input.
:class:`MaskPredictor` turns a prompt into SAM's arguments, picks the windows of the token grid
a decoder trained on windows runs on, and makes masks from the logits; its subclasses run the
decoder (:class:`tilesam.SamModel` with torch, :class:`tilesam.decode.numpy_decoder.NumpyPredictor`
with NumPy on weights a cache keeps). Nothing here imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from tilesam.decode.isolate import PromptFootprint, keep_prompted
from tilesam.decode.logits import MaskLogits, prompted_window
from tilesam.errors import TileSAMError

# Tokens a decoding window keeps around the prompt's marks on each side, at least.
_DECODER_WINDOW_PAD = 4


@dataclass(frozen=True)
class ImageEmbedding:
    """An image's encoder output and the geometry needed to map prompts and masks.

    ``features`` is ``(1, C, h, w)``, a torch tensor (what :meth:`tilesam.SamModel.embed`
    returns) or a NumPy array (what a session reads from its cache); ``input_size`` is the
    image's size after resizing to the model input (before padding); ``original_size`` its
    size as given.
    """

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]


@dataclass
class Prediction:
    """Masks for one prompt: ``scores`` ``(M,)`` predicted IoU, ``low_res_logits``
    ``(M, 256, 256)``; logits and full-resolution masks are computed when asked for.

    With a ``footprint`` (the prompt's positive points and box), full-resolution masks keep
    only the parts the prompt touches (:func:`tilesam.decode.isolate.keep_prompted`); then only
    the logits around those parts are computed. ``low_res_logits`` are the decoder's own
    either way; for a prompt decoded on a window of the grid (``Sam.decoder_windows``) they
    are ``OUTSIDE_LOGIT`` outside it.
    """

    scores: np.ndarray
    logits: MaskLogits = field(repr=False)
    embedding: ImageEmbedding = field(repr=False)
    threshold: float = 0.0
    footprint: PromptFootprint | None = field(default=None, repr=False)

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
        footprint = self.footprint
        if footprint is None or footprint.empty or self.logits.has_full:
            window, origin = self.low_res_logits[index], (0, 0)
        else:
            cells = _in_cells(footprint, emb.input_size, emb.original_size)
            window, origin = prompted_window(self.logits, index, cells, self.threshold)
        return upsample_mask(
            window,
            emb.input_size,
            emb.original_size,
            self.threshold,
            footprint=footprint,
            origin=origin,
            grid_shape=self.logits.shape,
        )


@dataclass(frozen=True)
class SamPrompt:
    """A prompt as SAM's decoders take it, in the model-input frame: points ``(N, 2)`` as
    ``(x, y)`` with labels 1 / 0, a box ``(x0, y0, x1, y1)``, a mask input ``(4h, 4w)``."""

    coords: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    mask: np.ndarray | None
    multimask: bool


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
        prompt, footprint = self._sam_prompt(embedding, points, labels, box, multimask)
        prompt = replace(prompt, mask=self._mask_prompt(mask_input))
        if prompt.coords is None and prompt.box is None and prompt.mask is None:
            raise TileSAMError("Empty prompt: give at least one point, a box or a mask input.")
        threshold = self._threshold(box is not None and keep_prompted and tight_box)
        kept = footprint if keep_prompted else None
        for window in self._decoder_windows(prompt):
            scores, logits = self._decode(embedding, prompt, window)
            if not _reaches_edge(logits, scores, embedding, kept, threshold):
                return Prediction(scores, logits, embedding, threshold, kept)
        scores, logits = self._decode(embedding, prompt, None)
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

    def _sam_prompt(
        self, embedding: ImageEmbedding, points, labels, box, multimask: bool = True
    ) -> tuple[SamPrompt, PromptFootprint]:
        """SAM's point and box arguments (no mask), and the prompt's footprint in image
        pixels."""
        height, width = embedding.original_size
        scale = np.array(
            [embedding.input_size[1] / width, embedding.input_size[0] / height], dtype=np.float32
        )
        coords = sam_labels = sam_box = yx_box = None
        positive = np.zeros((0, 2), dtype=np.float32)
        if labels is not None and (points is None or not len(points)):
            raise TileSAMError("labels were given without points: pass points=[(y, x), ...].")
        if points is not None and len(points):
            yx = _as_points(points, labels, embedding.original_size)
            sam_labels = np.ones(len(yx), np.int64) if labels is None else np.asarray(labels)
            sam_labels = sam_labels.astype(np.int64)
            positive = yx[sam_labels == 1]
            coords = yx[:, ::-1] * scale
        if box is not None:
            yx_box = _as_box(box, embedding.original_size)
            y0, x0, y1, x1 = yx_box
            sam_box = np.array([x0, y0, x1, y1], dtype=np.float32) * np.tile(scale, 2)
        prompt = SamPrompt(coords, sam_labels, sam_box, None, multimask)
        return prompt, PromptFootprint(positive, yx_box)

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
    footprint: PromptFootprint | None,
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
    select = footprint is not None and not footprint.empty
    if select:
        cells = _in_cells(footprint, embedding.input_size, embedding.original_size)
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


def _as_points(points, labels, size: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0 or arr.shape[-1] != 2:
        raise TileSAMError(f"points must be (y, x) pairs, got an array of shape {arr.shape}.")
    yx = arr.reshape(-1, 2)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(yx),) or not np.isin(labels, (0, 1)).all():
            raise TileSAMError(
                "labels must hold one 1 (positive) or 0 (negative) per point: got "
                f"{labels.tolist()} for {len(yx)} points."
            )
    outside = ~((yx >= 0) & (yx < np.array(size))).all(axis=1)
    if outside.any() or not np.isfinite(yx).all():
        raise TileSAMError(
            f"Point {tuple(yx[np.argmax(outside)].tolist())} lies outside the image of shape "
            f"{size}: points are (y, x) pixel positions inside the image."
        )
    # In float32 a point a hair inside the last pixel (107.99999999) would land on the edge.
    return np.minimum(yx.astype(np.float32), np.nextafter(np.float32(size), np.float32(0)))


def _as_box(box, size: tuple[int, int]) -> tuple[float, float, float, float]:
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,):
        raise TileSAMError(f"box must be (y0, x0, y1, x1), got {np.asarray(box).shape} values.")
    y0, x0, y1, x1 = values
    if not (y1 > y0 and x1 > x0):
        raise TileSAMError(
            f"box {values.tolist()} is empty: it must be (y0, x0, y1, x1) with y1 > y0, x1 > x0."
        )
    if y0 < 0 or x0 < 0 or y1 > size[0] or x1 > size[1]:
        raise TileSAMError(f"box {values.tolist()} reaches outside the image of shape {size}.")
    return y0, x0, y1, x1


def upsample_mask(
    low_res: np.ndarray,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float = 0.0,
    footprint: PromptFootprint | None = None,
    *,
    origin: tuple[int, int] = (0, 0),
    grid_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Low-res logits to a full-resolution boolean mask, like SAM's postprocessing.

    SAM upsamples to the padded input, crops the padding and resizes to the original size,
    both bilinearly. Both steps are linear, so they are one matrix per axis; and a pixel can
    only be positive near a positive low-res cell, so only that window is computed. With a
    `footprint`, only the parts the prompt touches are kept (:func:`keep_prompted`).
    `low_res` may be a window at `origin` of a grid of `grid_shape` cells (default: the
    whole grid); it must hold every cell the kept parts' upsampling reads.
    """
    mask = np.zeros(original_size, dtype=bool)
    grid_shape = low_res.shape if grid_shape is None else grid_shape
    positive = low_res > threshold
    select = footprint is not None and not footprint.empty
    if select:
        # Choose the prompted parts on the low-res grid first (a cell is 4 model-input
        # pixels), so that only their window is upsampled; then exactly, at full resolution.
        cells = _in_cells(footprint, input_size, original_size).shifted(*origin)
        positive = keep_prompted(positive, cells, clip=False)
    rows, cols = np.flatnonzero(positive.any(1)), np.flatnonzero(positive.any(0))
    if rows.size == 0:
        return mask
    wy = _axis_weights(grid_shape[0], input_size[0], original_size[0])
    wx = _axis_weights(grid_shape[1], input_size[1], original_size[1])
    y0, y1 = _support(wy, origin[0] + rows[0], origin[0] + rows[-1])
    x0, x1 = _support(wx, origin[1] + cols[0], origin[1] + cols[-1])
    if y0 == y1 or x0 == x1:
        return mask  # the positive cells lie in the padding, outside the image
    wy, wx = wy[y0:y1], wx[x0:x1]
    # Only the low-res cells these output pixels interpolate from take part.
    r0, r1 = _used_cells(wy)
    c0, c1 = _used_cells(wx)
    cells = low_res[r0 - origin[0] : r1 - origin[0], c0 - origin[1] : c1 - origin[1]]
    window = wy[:, r0:r1] @ cells.astype(np.float32) @ wx[:, c0:c1].T > threshold
    if select:
        window = keep_prompted(window, footprint.shifted(y0, x0))
    mask[y0:y1, x0:x1] = window
    return mask


def _in_cells(
    footprint: PromptFootprint, input_size: tuple[int, int], original_size: tuple[int, int]
) -> PromptFootprint:
    """`footprint` on the low-resolution grid: a quarter of the model input per side."""
    return footprint.scaled(*(i / o / 4 for i, o in zip(input_size, original_size)))


def _used_cells(weights: np.ndarray) -> tuple[int, int]:
    used = np.flatnonzero((weights != 0).any(0))
    return int(used[0]), int(used[-1]) + 1


def _support(weights: np.ndarray, first: int, last: int) -> tuple[int, int]:
    """Output range whose interpolation weights touch low-res cells ``first..last`` (± 1)."""
    lo, hi = max(first - 1, 0), min(last + 2, weights.shape[1])
    touched = np.flatnonzero((weights[:, lo:hi] != 0).any(1))
    if touched.size == 0:
        return 0, 0
    return int(touched[0]), int(touched[-1]) + 1


@lru_cache(maxsize=64)
def _axis_weights(low_res: int, input_len: int, original_len: int) -> np.ndarray:
    """``(original_len, low_res)`` matrix of the two-step bilinear resize along one axis."""
    # The decoder's logits are a quarter of the padded model input.
    step1 = _linear_resize(low_res, 4 * low_res)[:input_len]
    return _linear_resize(input_len, original_len) @ step1


def _linear_resize(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix of torch's ``interpolate(mode="linear", align_corners=False)``,
    computed as torch computes it on the CPU (positions in float32)."""
    scale = np.float32(n_in) / np.float32(n_out)
    source = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    source = np.maximum(source, np.float32(0))
    first = source.astype(np.int64)
    second = np.minimum(first + 1, n_in - 1)
    frac = source - first.astype(np.float32)
    weights = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, first), np.float32(1) - frac)
    np.add.at(weights, (rows, second), frac)
    return weights
