"""From the decoder's low-resolution logits to a full-resolution mask, as SAM's
postprocessing does, computing only the window a mask can be positive in."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tilesam.decode.isolate import _box_slices, keep_prompted, touches_prompt
from tilesam.decode.logits import MaskLogits
from tilesam.decode.prompt import Prompt


def upsample_mask(
    low_res: np.ndarray,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float = 0.0,
    prompt: Prompt | None = None,
    *,
    origin: tuple[int, int] = (0, 0),
    grid_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Low-res logits to a full-resolution boolean mask, like SAM's postprocessing.

    SAM upsamples to the padded input, crops the padding and resizes to the original size,
    both bilinearly. Both steps are linear, so they are one matrix per axis; and a pixel can
    only be positive near a positive low-res cell, so only that window is computed. With a
    `prompt`, only the parts the prompt touches are kept (:func:`keep_prompted`).
    `low_res` may be a window at `origin` of a grid of `grid_shape` cells (default: the
    whole grid); it must hold every cell the kept parts' upsampling reads.
    """
    mask = np.zeros(original_size, dtype=bool)
    grid_shape = low_res.shape if grid_shape is None else grid_shape
    positive = low_res > threshold
    select = prompt is not None and prompt.has_object
    if select:
        # Choose the prompted parts on the low-res grid first (a cell is 4 model-input
        # pixels), so that only their window is upsampled; then exactly, at full resolution.
        cells = in_cells(prompt, input_size, original_size).shifted(*origin)
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
    window = _resized_above(wy[:, r0:r1], cells.astype(np.float32), wx[:, c0:c1], threshold)
    if select:
        window = keep_prompted(window, prompt.shifted(y0, x0))
    mask[y0:y1, x0:x1] = window
    return mask


def confined_to_box(prompt: Prompt, original_size: tuple[int, int]) -> bool:
    """Whether what :func:`keep_prompted` keeps of a mask lies inside `prompt`'s box: it has a
    box, and every positive point's pixel lies inside it (no part is kept whole outside)."""
    if prompt.box is None:
        return False
    ys, xs = _box_slices(prompt.box, original_size)
    cells = np.floor(np.asarray(prompt.positive, dtype=float)).astype(int).reshape(-1, 2)
    inside = (cells[:, 0] >= ys.start) & (cells[:, 0] < ys.stop)
    inside &= (cells[:, 1] >= xs.start) & (cells[:, 1] < xs.stop)
    return bool(inside.all())


def box_mask(
    logits: MaskLogits,
    index: int,
    prompt: Prompt,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float,
) -> np.ndarray | None:
    """The mask :func:`upsample_mask` makes for a prompt :func:`confined_to_box`, computed
    on the box alone; None where that is not certain (then take the general path).

    Every part kept overlaps the box and is clipped to it, so the mask is the positive
    pixels of the box, inside the window that :func:`upsample_mask` upsamples (the support
    of the low-res parts kept). Whenever the parts found on the box's tokens (and one more
    around) already span the box, that window holds the box: the logits of those tokens
    decide every pixel, however large the object beyond the box.
    """
    ys, xs = _box_slices(prompt.box, original_size)
    if ys.stop <= ys.start or xs.stop <= xs.start:
        return None
    rows, cols = logits.shape
    wy = _axis_weights(rows, input_size[0], original_size[0])[ys]
    wx = _axis_weights(cols, input_size[1], original_size[1])[xs]
    (r0, r1), (c0, c1) = _used_cells(wy), _used_cells(wx)
    # The tokens of those cells and one more on each side: a kept part's support reaches
    # one cell beyond it.
    ty0, tx0 = max(r0 // 4 - 1, 0), max(c0 // 4 - 1, 0)
    ty1, tx1 = min((r1 - 1) // 4 + 2, logits.size[0]), min((c1 - 1) // 4 + 2, logits.size[1])
    values = logits.window(ty0, ty1, tx0, tx1)[index]
    oy, ox = 4 * ty0, 4 * tx0
    cells = in_cells(prompt, input_size, original_size).shifted(oy, ox)
    kept = keep_prompted(values > threshold, cells, clip=False)
    if not kept.any() or not touches_prompt(kept, cells):
        return None
    ky, kx = np.flatnonzero(kept.any(1)), np.flatnonzero(kept.any(0))
    full_wy = _axis_weights(rows, input_size[0], original_size[0])
    full_wx = _axis_weights(cols, input_size[1], original_size[1])
    y0, y1 = _support(full_wy, oy + ky[0], oy + ky[-1])
    x0, x1 = _support(full_wx, ox + kx[0], ox + kx[-1])
    if not (y0 <= ys.start and ys.stop <= y1 and x0 <= xs.start and xs.stop <= x1):
        return None
    part = values[r0 - oy : r1 - oy, c0 - ox : c1 - ox]
    mask = np.zeros(original_size, dtype=bool)
    mask[ys, xs] = wy[:, r0:r1] @ part @ wx[:, c0:c1].T > threshold
    return mask


def in_cells(prompt: Prompt, input_size: tuple[int, int], original_size: tuple[int, int]) -> Prompt:
    """`prompt` on the low-resolution grid: a quarter of the model input per side."""
    return prompt.scaled(*(i / o / 4 for i, o in zip(input_size, original_size)))


def _resized_above(
    wy: np.ndarray, cells: np.ndarray, wx: np.ndarray, threshold: float
) -> np.ndarray:
    """``wy @ cells @ wx.T > threshold``, computed in bands of output rows, then columns.

    An output pixel interpolates from at most 3 x 3 cells: a band of 64 rows (columns)
    reads about 18 rows (columns) of the cells, and only those enter its product, a
    tenth of the multiply-adds of the whole matrices on a full tile. The terms left out
    are exact zeros, so every pixel's sum is the same.
    """
    rows = np.empty((len(wy), cells.shape[1]), np.float32)
    for band in _bands(wy):
        lo, hi = _used_cells(wy[band])
        np.matmul(wy[band, lo:hi], cells[lo:hi], out=rows[band])
    out = np.empty((len(wy), len(wx)), dtype=bool)
    for band in _bands(wx):
        lo, hi = _used_cells(wx[band])
        np.greater(rows[:, lo:hi] @ wx[band, lo:hi].T, threshold, out=out[:, band])
    return out


def _bands(weights: np.ndarray, size: int = 64) -> list[slice]:
    return [slice(i, min(i + size, len(weights))) for i in range(0, len(weights), size)]


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
