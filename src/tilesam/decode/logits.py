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
        self._window: tuple[tuple[int, int, int, int], np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """The low-resolution grid, ``(4h, 4w)``."""
        return 4 * self.size[0], 4 * self.size[1]

    def full(self) -> np.ndarray:
        """Logits of every mask on the whole grid, ``(M, 4h, 4w)``."""
        return self.window(0, self.size[0], 0, self.size[1])

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Logits of every mask for tokens ``[y0:y1, x0:x1]``: ``(M, 4 (y1-y0), 4 (x1-x0))``."""
        cached = self._cached(y0, y1, x0, x1)
        if cached is not None:
            return cached
        dy0, dy1, dx0, dx1 = self.decoded
        iy0, iy1, ix0, ix1 = max(y0, dy0), min(y1, dy1), max(x0, dx0), min(x1, dx1)
        values = np.full((self.n_masks, 4 * (y1 - y0), 4 * (x1 - x0)), OUTSIDE_LOGIT, np.float32)
        if iy0 < iy1 and ix0 < ix1:
            rows = slice(4 * (iy0 - y0), 4 * (iy1 - y0))
            values[:, rows, 4 * (ix0 - x0) : 4 * (ix1 - x0)] = self._decoded_part(
                iy0, iy1, ix0, ix1
            )
        self._window = (y0, y1, x0, x1), values
        if self.has_full:
            self._tokens = None  # every window is now a slice of this one
        return values

    def _cached(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        """Logits of tokens ``[y0:y1, x0:x1]`` from the last window computed, if it holds them."""
        if self._window is None:
            return None
        (wy0, wy1, wx0, wx1), values = self._window
        if not (wy0 <= y0 and y1 <= wy1 and wx0 <= x0 and x1 <= wx1):
            return None
        return values[:, 4 * (y0 - wy0) : 4 * (y1 - wy0), 4 * (x0 - wx0) : 4 * (x1 - wx0)]

    def _decoded_part(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Logits of tokens ``[y0:y1, x0:x1]``, all decoded: from the last window when it
        holds them (a whole-grid request after a window's), else upscaled now."""
        cached = self._cached(y0, y1, x0, x1)
        if cached is not None:
            return cached
        dy0, _, dx0, _ = self.decoded
        tokens = self._tokens[y0 - dy0 : y1 - dy0, x0 - dx0 : x1 - dx0]
        return self._upscale(tokens.reshape(-1, tokens.shape[-1]), (y1 - y0, x1 - x0))

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
        return self._window is not None and self._window[0] == (0, self.size[0], 0, self.size[1])


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
