"""Logits computed only around the prompted object give the masks of the whole grid.

`Prediction.mask` upscales the decoder's tokens only in a window around the prompt, grown
until the kept parts lie inside it; these tests compare it, on the bundled `tiny` and real
nuclei, with the same prediction's masks from its logits on the whole grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from tilesam.decode.logits import prompted_window
from tilesam.decode.upsample import upsample_mask
from tilesam.evaluate.simulated_prompts import center_point

SAMPLES = Path(__file__).parents[2] / "sample_data"


@pytest.fixture(scope="module")
def nuclei():
    image = tifffile.imread(SAMPLES / "nuclei.tif")
    labels = tifffile.imread(SAMPLES / "nuclei_labels.tif")
    return image, labels


def _whole_grid_mask(prediction, index):
    emb = prediction.embedding
    return upsample_mask(
        prediction.low_res_logits[index],
        emb.input_size,
        emb.original_size,
        prediction.threshold,
        prompt=prediction.prompt,
    )


def _prompts(labels, count):
    """Centre clicks, tight boxes, and two-point prompts on `count` objects."""
    ids = [i for i in np.unique(labels) if i][:count]
    slices = ndimage.find_objects(labels)
    for i in ids:
        point = center_point(labels == i)
        ys, xs = slices[i - 1]
        yield {"points": [point], "labels": [1]}
        yield {"box": (ys.start, xs.start, ys.stop, xs.stop), "multimask": False}
        yield {"points": [point, (ys.start, xs.start)], "labels": [1, 0]}


@pytest.mark.parametrize(
    "layout",
    ["as is", "non-square crop", "tiled 2 x 3"],
)
def test_windowed_masks_equal_whole_grid_masks(tiny, nuclei, layout):
    image, labels = nuclei
    if layout == "non-square crop":
        image, labels = image[:, :180], labels[:, :180]
    elif layout == "tiled 2 x 3":
        image, labels = np.tile(image, (2, 3)), np.tile(labels, (2, 3))
    emb = tiny.embed(image)
    windowed = 0
    for prompt in _prompts(labels, 6):
        fast = tiny.predict(emb, **prompt)
        masks = [fast.mask(i) for i in range(len(fast.scores))]
        windowed += not fast.logits.has_full
        for i, mask in enumerate(masks):
            expected = _whole_grid_mask(fast, i)
            # Windows are computed by the same arithmetic on fewer rows: at most a
            # rounding difference at a logit within float error of the threshold.
            assert (mask != expected).sum() <= max(2, expected.sum() // 1000), prompt
    assert windowed > 0  # small objects are decoded on a window, not the whole grid


def test_window_grows_to_hold_a_large_object(tiny, nuclei):
    image, _ = nuclei
    emb = tiny.embed(image)
    pred = tiny.predict(emb, box=(0, 0, 256, 256), multimask=False)
    factor = [i / o / 4 for i, o in zip(emb.input_size, emb.original_size)]
    values, origin = prompted_window(pred.logits, 0, pred.prompt.scaled(*factor), pred.threshold)
    assert origin == (0, 0) and values.shape == pred.logits.shape
    np.testing.assert_allclose(values, pred.low_res_logits[0], atol=1e-4)


@pytest.mark.parametrize("distance", [2, 6, 12])
def test_click_on_background_keeps_the_nearest_part_as_the_whole_grid_would(tiny, nuclei, distance):
    image, labels = nuclei
    image, labels = np.tile(image, (2, 2)), np.tile(labels, (2, 2))
    far = ndimage.distance_transform_edt(labels == 0)
    candidates = np.argwhere((far > distance) & (far <= distance + 1))
    emb = tiny.embed(image)
    for point in candidates[:: max(len(candidates) // 5, 1)][:5]:
        pred = tiny.predict(emb, points=[point], labels=[1])
        mask = pred.mask()
        np.testing.assert_array_equal(mask, _whole_grid_mask(pred, pred.best))


def test_positive_cells_only_in_the_padding_give_an_empty_mask():
    # A 100 x 400 image fills a quarter of the input's height; the rest is padding.
    logits = np.full((256, 256), -5.0, dtype=np.float32)
    logits[200:210, 50:60] = 5.0
    mask = upsample_mask(logits, (256, 1024), (100, 400))
    assert mask.shape == (100, 400) and not mask.any()
