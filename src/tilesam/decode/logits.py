"""A prompt's mask logits, upscaled from the decoder's image tokens only where needed.

The decoder's last step (two stride-2 transposed convolutions and a product with per-mask
weights) acts on each of its image tokens alone, so the low-resolution logits of a window
of tokens are those of the whole grid cut to that window. :class:`MaskLogits` computes
windows on request; :func:`prompted_window` finds the window that holds what a prompt keeps
(:func:`tilesam.decode.isolate.keep_prompted`), so that a click on a small object upscales a few
hundred tokens instead of 4096.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tilesam.decode.isolate import keep_prompted, touches_prompt
from tilesam.decode.prompt import Prompt

# Tokens around a prompt that the first window of its logits adds on each side: most
# objects then fit the first window.
_WINDOW_PAD = 4
# The logit of cells outside the tokens the decoder ran on: certainly background, yet
# within the range of the decoder's own logits, so that it is a sound mask input.
OUTSIDE_LOGIT = -20.0


class MaskLogits:
    """A prompt's low-resolution mask logits, upscaled from the decoder's image tokens only
    where they are asked for.

    The decoder's last step (two stride-2 transposed convolutions and a product with
    per-mask weights) acts on each image token alone: the logits of a window of the
    ``(h, w)`` token grid are those of the same window computed for the whole grid.
    Window sides are in tokens; a token is ``4 x 4`` low-resolution cells. ``tokens`` are
    the decoder's image tokens ``(n, C)`` (a torch tensor or a NumPy array), row-major on
    ``decoded``, the window of the grid the decoder ran on (``(y0, y1, x0, x1)``, default
    the whole grid); cells outside it are ``OUTSIDE_LOGIT``. ``upscale(tokens, (h, w))``
    turns ``(h * w, C)`` of them into the logits of the `n_masks` masks, ``(M, 4h, 4w)``
    float32. ``extent`` is the ``(rows, cols)`` of tokens that hold image (the rest of the
    grid is the model input's padding).
    """

    def __init__(
        self,
        upscale: Callable[[Any, tuple[int, int]], np.ndarray],
        tokens: Any,
        n_masks: int,
        size: tuple[int, int],
        *,
        decoded: tuple[int, int, int, int] | None = None,
        extent: tuple[int, int] | None = None,
    ) -> None:
        self._upscale = upscale
        self.n_masks = n_masks
        self.size = size
        self.decoded = decoded or (0, size[0], 0, size[1])
        self.extent = extent or size
        y0, y1, x0, x1 = self.decoded
        self._tokens = tokens.reshape(y1 - y0, x1 - x0, -1)
        # Tokens whose logits are known (those outside the decoded window: OUTSIDE_LOGIT),
        # and a buffer of logits over `_rect`, the smallest rectangle of tokens holding every
        # window asked for so far: a growing window upscales only the tokens it adds.
        self._done = np.ones(size, dtype=bool)
        self._done[y0:y1, x0:x1] = False
        self._rect = (0, 0, 0, 0)
        self._values = np.zeros((n_masks, 0, 0), np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        """The low-resolution grid, ``(4h, 4w)``."""
        return 4 * self.size[0], 4 * self.size[1]

    def full(self) -> np.ndarray:
        """Logits of every mask on the whole grid, ``(M, 4h, 4w)``."""
        return self.window(0, self.size[0], 0, self.size[1])

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Logits of every mask for tokens ``[y0:y1, x0:x1]``: ``(M, 4 (y1-y0), 4 (x1-x0))``.

        Only tokens not upscaled for an earlier window are upscaled now (a view of the
        logits kept; do not write to it)."""
        self._cover(y0, y1, x0, x1)
        ry0, _, rx0, _ = self._rect
        missing = ~self._done[y0:y1, x0:x1]
        if missing.any():
            self._upscale_missing(missing, y0, x0)
        if self.has_full:
            self._tokens = None  # every window is now a slice of the buffer
        rows = slice(4 * (y0 - ry0), 4 * (y1 - ry0))
        return self._values[:, rows, 4 * (x0 - rx0) : 4 * (x1 - rx0)]

    def _cover(self, y0: int, y1: int, x0: int, x1: int) -> None:
        """Grow the buffer to the smallest rectangle holding tokens ``[y0:y1, x0:x1]`` too."""
        ry0, ry1, rx0, rx1 = self._rect
        if ry0 <= y0 and y1 <= ry1 and rx0 <= x0 and x1 <= rx1:
            return
        if ry1 > ry0 and rx1 > rx0:
            y0, y1, x0, x1 = min(y0, ry0), max(y1, ry1), min(x0, rx0), max(x1, rx1)
        values = np.full((self.n_masks, 4 * (y1 - y0), 4 * (x1 - x0)), OUTSIDE_LOGIT, np.float32)
        old = self._values
        oy, ox = 4 * (ry0 - y0), 4 * (rx0 - x0)
        values[:, oy : oy + old.shape[1], ox : ox + old.shape[2]] = old
        self._rect, self._values = (y0, y1, x0, x1), values

    def _upscale_missing(self, missing: np.ndarray, y0: int, x0: int) -> None:
        """Upscale the tokens `missing` of the window at token ``(y0, x0)``: as one block
        when they form a rectangle (a first window), else as a list (a window's new ring)."""
        ry0, _, rx0, _ = self._rect
        dy0, _, dx0, _ = self.decoded
        ys, xs = np.nonzero(missing)
        ys, xs = ys + y0, xs + x0
        by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        if (by1 - by0) * (bx1 - bx0) == len(ys):
            tokens = self._tokens[by0 - dy0 : by1 - dy0, bx0 - dx0 : bx1 - dx0]
            logits = self._upscale(tokens.reshape(-1, tokens.shape[-1]), (by1 - by0, bx1 - bx0))
            rows = slice(4 * (by0 - ry0), 4 * (by1 - ry0))
            self._values[:, rows, 4 * (bx0 - rx0) : 4 * (bx1 - rx0)] = logits
        else:  # each token's logits are its own: upscale them as a (1, n) row
            logits = self._upscale(self._tokens[ys - dy0, xs - dx0], (1, len(ys)))
            m, n = self.n_masks, len(ys)
            cells = logits.reshape(m, 4, n, 4).transpose(2, 0, 1, 3)
            grid = self._values.reshape(m, self._values.shape[1] // 4, 4, -1, 4)
            grid[:, ys - ry0, :, xs - rx0, :] = cells
        self._done[ys, xs] = True

    def open_sides(self) -> tuple[bool, bool, bool, bool]:
        """Whether the image goes on beyond the decoded window: top, bottom, left, right."""
        y0, y1, x0, x1 = self.decoded
        rows, cols = self.extent
        return y0 > 0, y1 < rows, x0 > 0, x1 < cols

    def edge_positive(self, threshold: float) -> np.ndarray:
        """Per mask, whether it has a logit above `threshold` in the outermost tokens of the
        decoded window, on the sides where the image goes on (a cheap first test: those
        tokens alone are upscaled). ``(M,)`` bool."""
        h, w = self._tokens.shape[:2]
        rows, cols = np.indices((h, w))
        edges = (rows == 0, rows == h - 1, cols == 0, cols == w - 1)
        ring = np.zeros((h, w), dtype=bool)
        for edge, open_ in zip(edges, self.open_sides()):
            ring |= edge & open_
        if not ring.any():
            return np.zeros(self.n_masks, dtype=bool)
        ys, xs = np.nonzero(ring)
        logits = self._upscale(self._tokens[ys, xs], (1, len(ys)))
        return (logits > threshold).reshape(self.n_masks, -1).any(axis=1)

    @property
    def has_full(self) -> bool:
        """Whether the whole grid's logits are computed (windows are then free)."""
        return bool(self._done.all())


def prompted_window(
    logits: MaskLogits, index: int, prompt: Prompt, threshold: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """Logits of mask `index` on a window holding the parts `prompt` (in low-res cells)
    touches, with a margin: ``(window, (row, col) of its origin)``.

    The window starts around the prompt and grows until it holds what the whole grid would
    give: the kept parts with every cell their upsampling reads; for a click that touches
    no part (:func:`keep_prompted` then keeps the nearest one), also every cell nearer to
    the click than that part.
    """
    size = np.array(logits.size)
    points = prompt.positive
    marks = points if prompt.box is None else np.vstack([points, np.reshape(prompt.box, (2, 2))])
    lo = np.floor(marks.min(axis=0) / 4).astype(int) - _WINDOW_PAD
    hi = np.floor(marks.max(axis=0) / 4).astype(int) + 1 + _WINDOW_PAD
    while True:
        lo, hi = np.maximum(lo, 0), np.minimum(hi, size)
        values = logits.window(lo[0], hi[0], lo[1], hi[1])[index]
        need = _needed_tokens(values > threshold, prompt.shifted(*(4 * lo)), lo, hi, size)
        if need is None:
            return values, tuple(int(v) for v in 4 * lo)
        need_lo, need_hi = need
        extent = hi - lo
        # At least doubling on a short side keeps the number of windows logarithmic.
        lo = np.where(need_lo < lo, np.minimum(need_lo - _WINDOW_PAD, lo - extent), lo)
        hi = np.where(need_hi > hi, np.maximum(need_hi + _WINDOW_PAD, hi + extent), hi)
        if np.prod(np.minimum(hi, size) - np.maximum(lo, 0)) > size.prod() / 2:
            lo, hi = np.zeros(2, int), size


def _needed_tokens(
    positive: np.ndarray,
    prompt: Prompt,
    lo: np.ndarray,
    hi: np.ndarray,
    size: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Token rectangle ``(lo, hi)`` that the window ``[lo, hi)`` of a grid of `size` tokens
    must cover to decide the kept parts as the whole grid would; None when it does."""
    kept = keep_prompted(positive, prompt, clip=False)
    if not kept.any():
        if positive.any() or not len(prompt.positive):
            return None  # nothing touches the box, which lies inside
        need_lo, need_hi = lo - (hi - lo), hi + (hi - lo)  # the nearest part is further away
    else:
        rows, cols = np.flatnonzero(kept.any(1)), np.flatnonzero(kept.any(0))
        # Tokens of the kept parts and one more on each side: the cells upsampling reads.
        need_lo = lo + np.array([rows[0], cols[0]]) // 4 - 1
        need_hi = lo + np.array([rows[-1], cols[-1]]) // 4 + 2
        if not touches_prompt(kept, prompt):
            # The nearest part: no cell nearer to the click may lie outside the window.
            point = prompt.positive[0]
            reach = np.sqrt(((np.argwhere(kept) - point) ** 2).sum(axis=1).min())
            need_lo = np.minimum(need_lo, lo + np.floor((point - reach) / 4).astype(int) - 1)
            need_hi = np.maximum(need_hi, lo + np.floor((point + reach) / 4).astype(int) + 2)
    # Where the window meets the grid's edge there is nothing more to see.
    short = ((need_lo < lo) & (lo > 0)) | ((need_hi > hi) & (hi < size))
    return (need_lo, need_hi) if short.any() else None
