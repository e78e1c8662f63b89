"""`tiny` decodes a prompt on a window of the embedding grid, as it was trained.

The bundled model's decoder never saw a whole 64-token grid in training (crops of 16
tokens, mosaics of 32), so a prompt is decoded on a window around it: a box on the
smallest that holds it, points on 24 tokens; a mask that reaches a window's edge is
decoded again on the next window, then on the whole grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import torch

import tilesam.decode.predictor as prediction_module
from tilesam.cache.embed import embed_scaled
from tilesam.decode.logits import OUTSIDE_LOGIT
from tilesam.evaluate.simulated_prompts import box_from_mask, center_point
from tilesam.models.registry import ARCHITECTURES, build_sam

SAMPLES = Path(__file__).parents[2] / "sample_data"


def _decode_by_hand(sam, emb, window, **prompt):
    """The decoder on `window` of the grid: features and positional encoding cut to it, the
    prompt (in model-input pixels, SAM's (x, y)) where it is in the whole input."""
    y0, y1, x0, x1 = window
    crop = (..., slice(y0, y1), slice(x0, x1))
    with torch.inference_mode():
        logits, iou = sam.decode(
            emb.features[crop], image_pe=sam.prompt_encoder.get_dense_pe()[crop], **prompt
        )
    return logits[0].numpy(), iou[0].numpy()


def test_only_the_trained_window_models_decode_on_a_window():
    assert build_sam(ARCHITECTURES["tiny"]).decoder_windows == (16, 24)
    assert build_sam(ARCHITECTURES["vit_t"]).decoder_windows == ()


def test_a_click_is_decoded_on_the_window_around_it(tiny, nuclei_field):
    emb, labels = nuclei_field
    ids, counts = np.unique(labels[256:512, 256:512], return_counts=True)
    point = center_point(labels == ids[1:][np.argmax(counts[1:])])  # the largest, mid-nuclei_field
    pred = tiny.predict(emb, points=[point], labels=[1])
    y0, y1, x0, x1 = pred.logits.decoded
    assert (y1 - y0, x1 - x0) == (24, 24)
    token = np.array(point) * np.array(emb.input_size) / np.array(emb.original_size) / 16
    assert y0 <= token[0] < y1 and x0 <= token[1] < x1

    # The same window decoded by hand.
    scale = np.array(emb.input_size) / np.array(emb.original_size)
    xy = torch.from_numpy(np.float32([[point[::-1] * scale[::-1]]]))
    logits, iou = _decode_by_hand(
        tiny.sam, emb, (y0, y1, x0, x1), points=(xy, torch.ones(1, 1, dtype=torch.int64))
    )
    np.testing.assert_allclose(pred.scores, iou, atol=1e-5)
    low_res = pred.low_res_logits
    np.testing.assert_allclose(low_res[:, 4 * y0 : 4 * y1, 4 * x0 : 4 * x1], logits, atol=1e-3)
    outside = np.ones(low_res.shape[1:], bool)
    outside[4 * y0 : 4 * y1, 4 * x0 : 4 * x1] = False
    assert (low_res[:, outside] == OUTSIDE_LOGIT).all()


def _without_window(tiny, **prompt):
    windows, tiny.sam.decoder_windows = tiny.sam.decoder_windows, ()
    try:
        return tiny.predict(**prompt)
    finally:
        tiny.sam.decoder_windows = windows


def test_a_box_is_decoded_on_the_smallest_window_that_holds_it(tiny, nuclei_field):
    emb, labels = nuclei_field
    ids, counts = np.unique(labels[256:512, 256:512], return_counts=True)
    target = labels == ids[1:][np.argmax(counts[1:])]
    box = box_from_mask(target)
    pred = tiny.predict(emb, box=box, multimask=False)
    y0, y1, x0, x1 = pred.logits.decoded
    assert (y1 - y0, x1 - x0) == (16, 16)
    scale = np.array(emb.input_size * 2) / np.array(emb.original_size * 2)
    corners = (np.float32(box)[[1, 0, 3, 2]] * scale[[1, 0, 3, 2]]).astype(np.float32)
    logits, iou = _decode_by_hand(
        tiny.sam, emb, (y0, y1, x0, x1), boxes=torch.from_numpy(corners)[None],
        multimask_output=False,
    )  # fmt: skip
    np.testing.assert_allclose(pred.scores, iou, atol=1e-5)
    np.testing.assert_allclose(
        pred.low_res_logits[:, 4 * y0 : 4 * y1, 4 * x0 : 4 * x1], logits, atol=1e-3
    )
    mask = pred.mask()
    assert (mask & target).sum() / (mask | target).sum() > 0.7


def test_a_mask_leaving_the_small_window_is_decoded_on_the_next(tiny, nuclei_field, monkeypatch):
    emb, labels = nuclei_field
    ids = np.unique(labels[256:512, 256:512])[1:]
    box = box_from_mask(labels == ids[0])
    calls = []

    def reaches_the_first(logits, *args):
        calls.append(logits.decoded)
        return len(calls) == 1

    monkeypatch.setattr(prediction_module, "_reaches_edge", reaches_the_first)
    pred = tiny.predict(emb, box=box, multimask=False)
    (a0, a1, b0, b1), second = calls
    assert (a1 - a0, b1 - b0) == (16, 16) and pred.logits.decoded == second
    y0, y1, x0, x1 = second
    assert (y1 - y0, x1 - x0) == (24, 24) and y0 <= a0 < a1 <= y1 and x0 <= b0 < b1 <= x1


def test_window_masks_are_close_to_whole_grid_masks(tiny, nuclei_field):
    # An approximation (attention sees the window's tokens only), measured on 280 Coelho
    # nuclei: mean IoU from one click 0.773 on the window, 0.785 on the whole grid. Weights
    # trained on windows only agree less with their whole-grid masks (here stage 3: mean
    # 0.79; stage 4: 0.74, one nucleus at 0.37) but are no less accurate: against the truth
    # 0.33 on the window, 0.29 on the grid (stage 4). A broken window (wrong features,
    # encoding or offsets) puts its masks elsewhere.
    emb, labels = nuclei_field
    agreement, on_window, window_iou, grid_iou = [], 0, [], []
    for i in np.unique(labels[256:512, 256:512])[1:13]:
        truth = labels == i
        prompt = {"embedding": emb, "points": [center_point(truth)], "labels": [1]}
        windowed = tiny.predict(**prompt)
        on_window += windowed.logits.decoded != (0, 64, 0, 64)
        mask, whole = windowed.mask(), _without_window(tiny, **prompt).mask()
        agreement.append(_iou(mask, whole))
        window_iou.append(_iou(mask, truth))
        grid_iou.append(_iou(whole, truth))
    assert on_window >= 10  # nuclei fit the window
    assert np.mean(agreement) > 0.7
    assert np.mean(window_iou) >= np.mean(grid_iou) - 0.05


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_corrective_clicks_take_the_previous_logits_on_their_window(tiny, nuclei_field):
    emb, labels = nuclei_field
    ids, counts = np.unique(labels[:256, 256:768], return_counts=True)
    point = center_point(labels == ids[1:][np.argmax(counts[1:])])  # off the diagonal
    first = tiny.predict(emb, points=[point], labels=[1])
    previous = first.low_res_logits[first.best]
    points = [point, (point[0] + 20, point[1] + 20)]
    again = tiny.predict(emb, points=points, labels=[1, 0], mask_input=previous, multimask=False)
    y0, y1, x0, x1 = again.logits.decoded
    assert (y1 - y0, x1 - x0) == (24, 24) and y0 != x0

    # By hand: the previous logits cut to the window, like the features.
    scale = np.array(emb.input_size) / np.array(emb.original_size)
    xy = torch.from_numpy(np.float32([[np.array(p)[::-1] * scale[::-1] for p in points]]))
    cells = (..., slice(4 * y0, 4 * y1), slice(4 * x0, 4 * x1))
    logits, iou = _decode_by_hand(
        tiny.sam, emb, (y0, y1, x0, x1),
        points=(xy, torch.tensor([[1, 0]])),
        mask_input=torch.from_numpy(previous[None, None])[cells],
        multimask_output=False,
    )  # fmt: skip
    np.testing.assert_allclose(again.scores, iou, atol=1e-5)
    np.testing.assert_allclose(again.low_res_logits[cells], logits, atol=1e-3)


def test_an_object_cut_by_the_image_edge_stays_on_its_window(tiny):
    # The window lies against the image's right edge: a mask reaching that edge has
    # nothing more to find, so the prompt is not decoded again.
    yy, xx = np.mgrid[:1024, :1024]
    image = np.where((yy - 512) ** 2 + (xx - 1010) ** 2 < 45**2, 200, 20).astype(np.uint8)
    pred = tiny.predict(tiny.embed(image), points=[(512, 1000)], labels=[1])
    assert pred.logits.decoded == (20, 44, 40, 64)
    mask = pred.mask()
    assert mask[:, -1].any() and not mask[:, :900].any()


def test_padding_is_no_place_for_a_mask_to_go_on(tiny):
    # 300 pixels at their own scale: 19 of the grid's 64 tokens hold image, the rest is
    # the model input's padding, where no mask goes on.
    image = np.tile(tifffile.imread(SAMPLES / "nuclei.tif"), (2, 2))[:300, :300]
    intensity = (float(image.min()), float(image.max()))
    emb = embed_scaled(tiny, [image], intensity=intensity, scale=1)[0]
    middle = tiny.predict(emb, points=[(150, 150)], labels=[1])
    assert middle.logits.decoded == (0, 24, 0, 24)
    assert middle.logits.open_sides() == (False, False, False, False)
    corner = tiny.predict(emb, points=[(290, 290)], labels=[1])
    assert corner.logits.decoded == (6, 30, 6, 30)  # centred on the click
    assert corner.logits.open_sides() == (True, False, True, False)


def test_a_mask_reaching_the_window_edge_is_decoded_on_the_whole_grid(tiny):
    # One bright band 200 pixels tall across the image: longer than the 384-pixel window.
    # (A uniform disc 700 pixels across, used before, is beyond what the stage-4 tiny
    # segments from one click: a patch of it, inside the window.)
    yy = np.mgrid[:1024, :1024][0]
    band = np.abs(yy - 512) < 100
    image = np.where(band, 200, 20).astype(np.uint8)
    emb = tiny.embed(image)
    whole = tiny.predict(emb, box=(402, 10, 622, 1014), multimask=False)
    assert whole.logits.decoded == (0, 64, 0, 64)  # a box wider than the window
    # A click in its middle: the candidates on the window reach its edge.
    click = tiny.predict(emb, points=[(512, 512)], labels=[1])
    assert click.logits.decoded == (0, 64, 0, 64)
    plain = _without_window(tiny, embedding=emb, points=[(512, 512)], labels=[1])
    np.testing.assert_allclose(click.scores, plain.scores, atol=1e-5)
    for i in range(len(plain.scores)):
        np.testing.assert_array_equal(click.mask(i), plain.mask(i))
