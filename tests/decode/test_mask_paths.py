"""The fast paths of a click's mask against straightforward references on random logits.

``MaskLogits`` upscales only the tokens a window adds; ``Prediction.mask`` computes a box
prompt's mask on the box alone (``box_mask``) and otherwise upsamples only the window of
the kept parts (``upsample_mask``). The references: every token upscaled at once; the
whole grid upsampled by torch's two bilinear resizes (as SAM's postprocessing), thresholded,
then ``keep_prompted``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.isolate import keep_prompted
from tilesam.decode.logits import OUTSIDE_LOGIT, MaskLogits
from tilesam.decode.predictor import Prediction
from tilesam.decode.prompt import Prompt
from tilesam.decode.upsample import box_mask, confined_to_box, upsample_mask

GRID = (64, 64)
ORIGINAL = (1000, 900)
INPUT = (1024, 922)  # the longest side resized to 1024


def random_logits(seed: int, m: int = 3, offset: float = 0.0) -> np.ndarray:
    """Smooth random logits ``(m, 256, 256)``: blobs of many sizes (`offset` > 0: larger)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(m, 4 * GRID[0], 4 * GRID[1]))
    smooth = np.stack([ndimage.gaussian_filter(n, 6) for n in noise])
    return (smooth / smooth.std() * 4 + offset).astype(np.float32)


def placing_logits(values: np.ndarray, decoded=None) -> MaskLogits:
    """`values` served as MaskLogits whose tokens carry their own cells (as SAM 2's)."""
    m, h, w = values.shape[0], values.shape[1] // 4, values.shape[2] // 4
    tokens = values.reshape(m, h, 4, w, 4).transpose(1, 3, 0, 2, 4).reshape(h, w, m * 16)
    if decoded is not None:
        y0, y1, x0, x1 = decoded
        tokens = tokens[y0:y1, x0:x1]
    calls = []

    def place(rows: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        calls.append(len(rows))
        th, tw = hw
        out = rows.reshape(th, tw, m, 4, 4).transpose(2, 0, 3, 1, 4)
        return np.ascontiguousarray(out.reshape(m, 4 * th, 4 * tw))

    logits = MaskLogits(place, tokens.reshape(-1, m * 16), m, (h, w), decoded=decoded)
    logits.calls = calls
    return logits


def reference_mask(low_res: np.ndarray, prompt: Prompt | None, threshold: float) -> np.ndarray:
    """SAM's postprocessing on the whole grid (torch), thresholded, then keep_prompted."""
    x = torch.from_numpy(low_res)[None, None]
    x = F.interpolate(x, (4 * x.shape[-2], 4 * x.shape[-1]), mode="bilinear", align_corners=False)
    x = x[..., : INPUT[0], : INPUT[1]]
    x = F.interpolate(x, ORIGINAL, mode="bilinear", align_corners=False)[0, 0].numpy()
    mask = x > threshold
    return mask if prompt is None else keep_prompted(mask, prompt)


def test_growing_windows_upscale_each_token_once_and_match_one_pass():
    values = random_logits(0)
    logits = placing_logits(values)
    for lo, hi in ((28, 36), (20, 44), (0, 64)):
        np.testing.assert_array_equal(
            logits.window(lo, hi, lo, hi), values[:, 4 * lo : 4 * hi, 4 * lo : 4 * hi]
        )
    assert sum(logits.calls) == GRID[0] * GRID[1]  # every token upscaled once
    assert logits.has_full
    np.testing.assert_array_equal(logits.full(), values)


def test_windows_outside_the_decoded_window_are_outside_logit():
    values = random_logits(1)
    decoded = (10, 40, 20, 50)
    logits = placing_logits(values, decoded)
    part = logits.window(0, 30, 0, 30)
    expected = np.full_like(values, OUTSIDE_LOGIT)
    expected[:, 40:160, 80:200] = values[:, 40:160, 80:200]
    np.testing.assert_array_equal(part, expected[:, :120, :120])
    np.testing.assert_array_equal(logits.window(5, 64, 15, 60), expected[:, 20:, 60:240])
    assert sum(logits.calls) == 30 * 30


def _prompts(rng: np.random.Generator) -> list[Prompt]:
    out = []
    for _ in range(4):
        y, x = rng.uniform(50, 850, 2)
        h, w = rng.uniform(10, 140, 2)
        box = (y, x, y + h, x + w)
        out.append(Prompt(np.array([[y + h / 2, x + w / 2]]), np.array([1])))
        out.append(Prompt(np.zeros((0, 2)), np.zeros(0, int), box))
        out.append(Prompt(np.array([[y + h / 2, x + w / 2]]), np.array([1]), box))
        outside = np.array([[y + h / 2, x + w / 2], [y - 20, x - 20]])
        out.append(Prompt(outside, np.array([1, 1]), box))  # a part kept whole outside
    return out


@pytest.mark.parametrize("seed,offset,threshold", [(2, 0.0, 0.0), (3, 3.0, 0.0), (4, -2, -1.0)])
def test_masks_equal_the_whole_grid_path_and_the_reference(seed, offset, threshold):
    values = random_logits(seed, offset=offset)
    emb = ImageEmbedding(None, ORIGINAL, INPUT)
    rng = np.random.default_rng(seed)
    differing = total = 0
    for prompt in _prompts(rng):
        pred = Prediction(np.arange(3.0), placing_logits(values), emb, threshold, prompt)
        for i in range(3):
            fast = pred.mask(i)
            # Today's algorithm on the whole grid, and the plain reference.
            whole = upsample_mask(values[i], INPUT, ORIGINAL, threshold, prompt=prompt)
            np.testing.assert_array_equal(fast, whole)
            reference = reference_mask(values[i], prompt, threshold)
            differing += int((fast != reference).sum())
            total += fast.size
    assert differing <= 0.005 * total


def test_box_mask_is_the_box_of_the_upsampled_mask():
    values = random_logits(5, offset=4.0)  # one object larger than every box
    rng = np.random.default_rng(5)
    for prompt in _prompts(rng):
        if not confined_to_box(prompt, ORIGINAL):
            continue
        logits = placing_logits(values)
        fast = box_mask(logits, 0, prompt, INPUT, ORIGINAL, 0.0)
        assert fast is not None  # decided on the box's tokens alone
        assert sum(logits.calls) < GRID[0] * GRID[1] / 4
        reference = reference_mask(values[0], None, 0.0)
        ys, xs = (
            slice(int(np.floor(a)), int(np.ceil(b))) for a, b in zip(prompt.box[:2], prompt.box[2:])
        )
        clipped = np.zeros_like(reference)
        clipped[ys, xs] = reference[ys, xs]
        np.testing.assert_array_equal(fast, clipped)


def test_confined_to_box():
    box = (10.0, 10.0, 50.0, 60.0)
    assert confined_to_box(Prompt(np.zeros((0, 2)), np.zeros(0, int), box), ORIGINAL)
    assert confined_to_box(Prompt(np.array([[20.0, 30.0]]), np.array([1]), box), ORIGINAL)
    assert not confined_to_box(Prompt(np.array([[5.0, 30.0]]), np.array([1]), box), ORIGINAL)
    # A negative point outside the box keeps nothing outside it.
    assert confined_to_box(Prompt(np.array([[5.0, 30.0]]), np.array([0]), box), ORIGINAL)
    assert not confined_to_box(Prompt(np.array([[20.0, 30.0]]), np.array([1])), ORIGINAL)
