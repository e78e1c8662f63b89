"""The user-facing model: embed an image once, then turn prompts into masks quickly.

Coordinates are array-index order: points ``(y, x)``, boxes ``(y0, x0, y1, x1)`` end-exclusive,
in pixels of the original image. Only :mod:`tilesam.models` speaks SAM's ``(x, y)``.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from tilesam.decoder_graphs import DecoderGraphs
from tilesam.errors import TileSAMError
from tilesam.isolate import PromptFootprint, keep_prompted
from tilesam.mask_logits import MaskLogits, prompted_window
from tilesam.models.registry import Architecture
from tilesam.models.sam import Sam
from tilesam.models.transformer import ImageTokens
from tilesam.preprocess import prepare_image

LOW_RES = 256  # side of the decoder's low-resolution logits for a 1024 input
# Embeddings whose decoder-ready image tokens are kept: a click, its corrections and a
# stitched object's neighbouring tiles mostly revisit the last few.
_TOKEN_CACHE_SIZE = 8
# Tokens a decoding window keeps around the prompt's marks on each side, at least.
_DECODER_WINDOW_PAD = 4


@dataclass(frozen=True)
class ImageEmbedding:
    """An image's encoder output and the geometry needed to map prompts and masks.

    ``features`` is ``(1, C, h, w)``; ``input_size`` is the image's size after resizing to
    the model input (before padding); ``original_size`` its size as given.
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]


@dataclass
class Prediction:
    """Masks for one prompt: ``scores`` ``(M,)`` predicted IoU, ``low_res_logits``
    ``(M, 256, 256)``; logits and full-resolution masks are computed when asked for.

    With a ``footprint`` (the prompt's positive points and box), full-resolution masks keep
    only the parts the prompt touches (:func:`tilesam.isolate.keep_prompted`); then only
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


class SamModel:
    """A SAM-family network ready for use: ``embed`` images, ``predict`` masks from prompts.

    Build one with :func:`tilesam.load_model`. Prompts decoded on windows of the token grid
    run through traced graphs of the decoder once they are ready (``decoder_graphs``, see
    :mod:`tilesam.decoder_graphs`: the same outputs, faster); pass ``decoder_graphs=False``
    for weights that still change.

    Examples
    --------
    >>> model = tilesam.load_model("tiny")  # doctest: +SKIP
    >>> emb = model.embed(image)  # doctest: +SKIP
    >>> result = model.predict(emb, points=[(120, 200)], labels=[1])  # doctest: +SKIP
    >>> mask = result.mask()  # doctest: +SKIP
    """

    def __init__(
        self,
        sam: Sam,
        *,
        name: str,
        architecture: Architecture,
        weights_hash: str | None = None,
        device: str | torch.device = "cpu",
        decoder_graphs: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.sam = sam.to(self.device).eval()
        self.name = name
        self.architecture = architecture
        self.weights_hash = weights_hash
        # Half precision only where the outputs stay within tolerance: the encoder on a GPU.
        self.encoder_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self._image_pe: torch.Tensor | None = None
        self._tokens: OrderedDict[int, tuple[weakref.ref, ImageTokens | None]] = OrderedDict()
        self._tokens_lock = threading.Lock()
        # Decoding on windows through traced graphs (see tilesam.decoder_graphs); they freeze
        # the weights, so a model whose weights still change (training) decodes eagerly.
        self._window_decoder = DecoderGraphs(self.sam) if decoder_graphs else self.sam

    @property
    def image_pe(self) -> torch.Tensor:
        """The decoder's positional encoding of the embedding grid, computed once."""
        if self._image_pe is None:
            with torch.inference_mode():
                self._image_pe = self.sam.prompt_encoder.get_dense_pe()
        return self._image_pe

    def __repr__(self) -> str:
        encoder = self.architecture.encoder
        return f"SamModel(name={self.name!r}, encoder={encoder!r}, device={self.device})"

    @property
    def image_size(self) -> int:
        """Side of the square model input (the natural tile size)."""
        return self.sam.image_size

    def embed(
        self, image: np.ndarray, *, intensity: tuple[float, float] | None = None
    ) -> ImageEmbedding:
        """Embed a 2D image, ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, of any dtype.

        ``intensity`` fixes the normalisation range (see
        :func:`tilesam.preprocess.normalize_intensity`); by default it is the image's own.
        A constant image raises :class:`TileSAMError` (a blank *tile* of a larger image is
        fine: :meth:`embed_batch` takes it).
        """
        pixels = np.asarray(image)
        if intensity is None and pixels.size and pixels.min() == pixels.max():
            raise TileSAMError(
                f"The image is constant (every pixel is {pixels.flat[0]}): nothing to segment."
            )
        return self.embed_batch([image], intensity=intensity)[0]

    def embed_batch(
        self,
        tiles: Sequence[np.ndarray] | np.ndarray,
        *,
        intensity: tuple[float, float] | None = None,
        batch_size: int = 4,
    ) -> list[ImageEmbedding]:
        """Embed many images of equal size at once (e.g. the tiles of a large image)."""
        if len(tiles) == 0:
            return []
        shapes = {np.shape(t) for t in tiles}
        if len(shapes) > 1:
            raise TileSAMError(f"embed_batch needs tiles of one size, got {sorted(shapes)}.")
        out = []
        for start in range(0, len(tiles), batch_size):
            prepared = [
                prepare_image(t, self.image_size, intensity)
                for t in tiles[start : start + batch_size]
            ]
            pixels = torch.cat([p for p, _ in prepared]).to(self.device)
            features = self._encode(pixels)
            input_size = tuple(pixels.shape[-2:])
            out += [
                ImageEmbedding(f[None], original_size=size, input_size=input_size)
                for f, (_, size) in zip(features, prepared)
            ]
        return out

    @torch.inference_mode()
    def _encode(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.sam.preprocess(pixels)
        with torch.autocast(
            self.device.type, dtype=self.encoder_dtype, enabled=self.encoder_dtype != torch.float32
        ):
            features = self.sam.image_encoder(x)
        return features.float()

    @torch.inference_mode()
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
        :mod:`tilesam.isolate`); ``False`` gives the decoder's masks as they are, like the
        official SAM code. ``tight_box=False`` says the box is not drawn tight around the
        object (e.g. a mask's box grown for the next slice): its mask then uses the model's
        point threshold, not its box threshold (see :meth:`_threshold`).
        """
        point_arg, box_arg, footprint = self._sam_prompts(embedding, points, labels, box)
        mask_arg = self._mask_prompt(mask_input)
        if point_arg is None and box_arg is None and mask_arg is None:
            raise TileSAMError("Empty prompt: give at least one point, a box or a mask input.")
        threshold = self._threshold(box is not None and keep_prompted and tight_box)
        kept = footprint if keep_prompted else None
        prompt = {"points": point_arg, "boxes": box_arg, "multimask_output": multimask}
        for window in self._decoder_windows(point_arg, box_arg):
            scores, logits = self._decode_window(embedding, prompt, mask_arg, window)
            if not _reaches_edge(logits, scores, embedding, kept, threshold):
                return Prediction(scores, logits, embedding, threshold, kept)
        if mask_arg is None:
            image = self._image_tokens(embedding.features)
        else:
            image = embedding.features.to(self.device)
        tokens, hyper_in, iou = self.sam.decode_tokens(
            image, mask_input=mask_arg, image_pe=self.image_pe, **prompt
        )
        grid = self.sam.prompt_encoder.image_embedding_size
        return Prediction(
            scores=iou[0].float().cpu().numpy(),
            logits=MaskLogits(self.sam.mask_decoder, tokens, hyper_in, grid),
            embedding=embedding,
            threshold=threshold,
            footprint=kept,
        )

    def _decoder_windows(self, point_arg, box_arg) -> list[tuple[int, int, int, int]]:
        """The windows of tokens ``(y0, y1, x0, x1)`` to decode a prompt on, in turn, for a
        model trained on windows of the grid (``Sam.decoder_windows``), each centred on the
        prompt's marks; a mask that reaches a window's edge is decoded on the next, then on
        the whole grid. No windows (the whole grid at once) for other models and for prompts
        wider than every window.

        A prompt with a box starts on the smallest window that holds it: the box tells the
        object's size. Points alone do not, and start on the largest (validation, 280
        nuclei: one click on the smallest lost 0.015 IoU; a box gained 0.008).
        """
        if not self.sam.decoder_windows or point_arg is None and box_arg is None:
            return []
        marks = [] if point_arg is None else [point_arg[0][0].cpu().numpy()]
        if box_arg is not None:
            marks.append(box_arg.reshape(2, 2).cpu().numpy())
        grid = np.array(self.sam.prompt_encoder.image_embedding_size)
        xy = np.concatenate(marks) * grid[::-1] / self.image_size  # (x, y) in tokens
        lo, hi = xy.min(axis=0)[::-1], xy.max(axis=0)[::-1]
        sides = window_sides(self.sam, hi - lo, box=box_arg is not None)
        return [centred_window(lo, hi, side, grid) for side in sides]

    def _extent(self, embedding: ImageEmbedding) -> tuple[int, int]:
        """The tokens of the grid that hold image, ``(rows, cols)``; the rest is padding."""
        token = self.image_size / self.sam.prompt_encoder.image_embedding_size[0]
        rows, cols = (int(np.ceil(n / token)) for n in embedding.input_size)
        return rows, cols

    def _decode_window(
        self, embedding: ImageEmbedding, prompt, mask_arg, window
    ) -> tuple[np.ndarray, MaskLogits]:
        """Decode on ``window`` of the token grid: its features and positional encoding,
        prompts at their place in the whole input (as in training, see
        :mod:`tilesam.training.interactive`)."""
        y0, y1, x0, x1 = window
        crop = (..., slice(y0, y1), slice(x0, x1))
        if mask_arg is not None:
            mask_arg = mask_arg[..., 4 * y0 : 4 * y1, 4 * x0 : 4 * x1]
        tokens, hyper_in, iou = self._window_decoder.decode_tokens(
            embedding.features[crop].to(self.device),
            mask_input=mask_arg,
            image_pe=self.image_pe[crop],
            **prompt,
        )
        grid = self.sam.prompt_encoder.image_embedding_size
        logits = MaskLogits(
            self.sam.mask_decoder,
            tokens,
            hyper_in,
            grid,
            decoded=window,
            extent=self._extent(embedding),
        )
        return iou[0].float().cpu().numpy(), logits

    def _threshold(self, has_box: bool) -> float:
        """The mask threshold for a prompt (see ``ModelEntry.box_mask_threshold``: it assumes
        the mask is clipped to the box, as ``keep_prompted`` does)."""
        box_threshold = self.sam.box_mask_threshold
        return box_threshold if has_box and box_threshold is not None else self.sam.mask_threshold

    def _image_tokens(self, features: torch.Tensor) -> ImageTokens | torch.Tensor:
        """The decoder's image side for ``features``, prepared on their second use.

        Preparing costs about three clicks' worth of the first block's savings, so features
        decoded once (a slice in propagation, a tile a stitched object just touches) are
        decoded as they are; a cache keyed by identity remembers what was seen.
        """
        key = id(features)
        with self._tokens_lock:
            hit = self._tokens.get(key)
            seen = hit is not None and hit[0]() is features
            if seen:
                self._tokens.move_to_end(key)
                if hit[1] is not None:
                    return hit[1]
            else:
                self._remember(key, features, None)
                return features.to(self.device)
        tokens = self.sam.image_tokens(features.to(self.device), self.image_pe)
        with self._tokens_lock:
            self._remember(key, features, tokens)
        return tokens

    def _remember(self, key: int, features: torch.Tensor, tokens: ImageTokens | None) -> None:
        self._tokens[key] = (weakref.ref(features), tokens)
        self._tokens.move_to_end(key)
        while len(self._tokens) > _TOKEN_CACHE_SIZE:
            self._tokens.popitem(last=False)

    def _sam_prompts(self, embedding, points, labels, box):
        """SAM's point and box arguments, and the prompt's footprint in image pixels."""
        height, width = embedding.original_size
        scale = np.array(
            [embedding.input_size[1] / width, embedding.input_size[0] / height], dtype=np.float32
        )
        point_arg = box_arg = yx_box = None
        positive = np.zeros((0, 2), dtype=np.float32)
        if labels is not None and (points is None or not len(points)):
            raise TileSAMError("labels were given without points: pass points=[(y, x), ...].")
        if points is not None and len(points):
            yx = _as_points(points, labels, embedding.original_size)
            labels = np.ones(len(yx)) if labels is None else np.asarray(labels)
            positive = yx[labels == 1]
            coords = torch.from_numpy(yx[:, ::-1] * scale).to(self.device)[None]
            point_arg = (
                coords,
                torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None],
            )
        if box is not None:
            yx_box = _as_box(box, embedding.original_size)
            y0, x0, y1, x1 = yx_box
            corners = np.array([x0, y0, x1, y1], dtype=np.float32) * np.tile(scale, 2)
            box_arg = torch.from_numpy(corners).to(self.device)[None]
        return point_arg, box_arg, PromptFootprint(positive, yx_box)

    def _mask_prompt(self, mask_input):
        if mask_input is None:
            return None
        mask = np.asarray(mask_input, dtype=np.float32)
        expected = self.sam.prompt_encoder.mask_input_size
        if mask.shape[-2:] != expected or mask.size != expected[0] * expected[1]:
            raise TileSAMError(
                f"mask_input must be low-res logits of shape {expected} (an earlier "
                f"prediction's low_res_logits[i]), got {mask.shape}."
            )
        return torch.from_numpy(mask.reshape(1, 1, *expected)).to(self.device)


def window_sides(sam: Sam, extent: float | np.ndarray, *, box: bool) -> list[int]:
    """The sides, in tokens, of the windows a prompt whose marks span `extent` tokens (one
    number, or one per axis) is decoded on, in turn (see :meth:`SamModel.predict`): with a
    box every one of ``Sam.decoder_windows`` that holds it, smallest first; points alone
    the largest. Empty: the whole grid at once."""
    grid = min(sam.prompt_encoder.image_embedding_size)
    sides = [side for side in sam.decoder_windows if side < grid]
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
    eye = torch.eye(low_res)[None]
    # The decoder's logits are a quarter of the padded model input.
    step1 = F.interpolate(eye, size=4 * low_res, mode="linear", align_corners=False)[0]
    cropped = step1[:, :input_len]
    step2 = F.interpolate(cropped[None], size=original_len, mode="linear", align_corners=False)[0]
    return step2.T.contiguous().numpy()
