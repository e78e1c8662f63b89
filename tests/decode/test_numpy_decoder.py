"""The NumPy decoder gives the model's masks, and a session over a complete cache clicks
without importing torch.

The official models' decoders are held to the official outputs in
``tests/models/test_official_fixtures.py``; here the bundled ``tiny``, whose decoder runs on
windows of the grid, on real nuclei, and the session's path from a cache on disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

import tilesam
from tilesam.cache.store import EmbeddingStore
from tilesam.decode.numpy_decoder import NumpyDecoder
from tilesam.decode.numpy_predictor import PREPARE_AT_USE, NumpyPredictor
from tilesam.evaluate.simulated_prompts import box_from_mask, center_point

SAMPLES = Path(__file__).parents[2] / "sample_data"


def _numpy(model) -> NumpyPredictor:
    weights, config = model.decoder_weights()
    return NumpyPredictor(
        NumpyDecoder(weights, config),
        mask_threshold=model.mask_threshold,
        box_mask_threshold=model.box_mask_threshold,
    )


def test_numpy_predictions_equal_the_models(tiny, nuclei_field) -> None:
    embedding, labels = nuclei_field
    numpy_predictor = _numpy(tiny)
    ids = np.unique(labels)[1:][::25]
    assert len(ids) >= 15
    pixels = total = 0
    for i in ids:
        obj = labels == i
        point = center_point(obj)
        box = box_from_mask(obj)
        prompts = [
            {"points": [point]},
            {"box": box, "multimask": False},
            {"points": [point, (0, 0)], "labels": [1, 0], "box": box, "multimask": False},
        ]
        for prompt in prompts:
            ours, theirs = (
                numpy_predictor.predict(embedding, **prompt),
                tiny.predict(embedding, **prompt),
            )
            np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-4)
            assert ours.logits.decoded == theirs.logits.decoded  # the same windows, in turn
            np.testing.assert_allclose(ours.low_res_logits, theirs.low_res_logits, atol=1e-3)
            pixels += int((ours.mask() != theirs.mask()).sum())
            total += obj.size
        # The chosen logits fed back as a mask prompt, as propagation does.
        refine = {"points": [point], "multimask": False, "mask_input": theirs.low_res_logits[0]}
        ours, theirs = (
            numpy_predictor.predict(embedding, **refine),
            tiny.predict(embedding, **refine),
        )
        np.testing.assert_allclose(ours.low_res_logits, theirs.low_res_logits, atol=1e-3)
    # Logits within 1e-3 may fall on either side of the threshold on a rare pixel.
    assert pixels / total < 1e-5


def test_the_numpy_decoder_refuses_a_bad_mask_prompt_like_the_model(tiny, nuclei_field) -> None:
    embedding, _ = nuclei_field
    with pytest.raises(tilesam.TileSAMError, match="mask_input must be low-res logits"):
        _numpy(tiny).predict(embedding, points=[(10, 10)], mask_input=np.zeros((64, 64)))


@pytest.fixture(scope="module")
def cached_image(tmp_path_factory, tiny):
    """A real TIFF of 2 x 2 tiles embedded into a cache on disk by a session with the model,
    and one click's mask from that session."""
    folder = tmp_path_factory.mktemp("cold")
    image = np.tile(tifffile.imread(SAMPLES / "nuclei.tif"), (3, 3))
    labels = ndimage.label(np.tile(tifffile.imread(SAMPLES / "nuclei_labels.tif"), (3, 3)) > 0)[0]
    tifffile.imwrite(folder / "nuclei.tif", image, tile=(128, 128))
    session = tilesam.Session(folder / "nuclei.tif", "tiny", folder / "c.zarr", tile_size=512)
    session.embed(progress=False)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    point = tuple(int(v) for v in center_point(labels == ids[np.argmax(counts)]))
    np.save(folder / "mask.npy", session.segment(points=[point]).mask)
    return folder, point


CLICK = """
import json, sys
import numpy as np
import tilesam
folder = sys.argv[1]
session = tilesam.Session(folder + "/nuclei.tif", cache=folder + "/c.zarr")
mask = session.segment(points=[json.loads(sys.argv[2])]).mask
print(json.dumps({
    "torch": "torch" in sys.modules,
    "predictor": type(session.predictor).__name__,
    "same": bool(np.array_equal(mask, np.load(folder + "/mask.npy"))),
    "pixels": int(mask.sum()),
}))
"""


def _click_in_a_fresh_process(folder: Path, point) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLICK), str(folder), json.dumps(point)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_session_on_a_complete_cache_clicks_without_torch(cached_image) -> None:
    folder, point = cached_image
    result = _click_in_a_fresh_process(folder, point)
    assert result == {
        "torch": False,
        "predictor": "NumpyPredictor",
        "same": True,
        "pixels": result["pixels"],
    }
    assert result["pixels"] > 50  # a nucleus, not nothing


def test_a_missing_tile_loads_the_model_to_embed_it(cached_image, tmp_path) -> None:
    folder, point = cached_image
    copy = tmp_path / "c.zarr"
    subprocess.run(["cp", "-r", str(folder / "c.zarr"), str(copy)], check=True)
    store = EmbeddingStore.open(copy)
    store.discard_tile(0, 0, 0)
    session = tilesam.Session(folder / "nuclei.tif", cache=copy)
    assert session._model is None and session.n_done == session.n_tiles - 1
    session.segment(points=[(40, 40)])  # in the discarded tile
    assert session._model is not None and session.n_done == session.n_tiles
    assert isinstance(session.predictor, NumpyPredictor)
    np.testing.assert_array_equal(
        session.segment(points=[point]).mask, np.load(folder / "mask.npy")
    )


def test_a_cache_without_usable_decoder_weights_gets_them_from_the_model(
    cached_image, tmp_path
) -> None:
    folder, point = cached_image
    copy = tmp_path / "c.zarr"
    subprocess.run(["cp", "-r", str(folder / "c.zarr"), str(copy)], check=True)
    weights, config = EmbeddingStore.open(copy).read_decoder()
    # Damaged weights are never used: their checksum fails and the model decodes.
    chunk = next((copy / "decoder").rglob("c/*"))
    chunk.write_bytes(chunk.read_bytes()[:-8] + b"\0" * 8)
    assert EmbeddingStore.open(copy).read_decoder() is None
    session = tilesam.Session(folder / "nuclei.tif", cache=copy)
    assert session._model is not None and session.predictor is session.model
    np.testing.assert_array_equal(
        session.segment(points=[point]).mask, np.load(folder / "mask.npy")
    )
    # ... and the session put them back, for the next one.
    restored, restored_config = EmbeddingStore.open(copy).read_decoder()
    assert restored_config == config and restored.keys() == weights.keys()
    assert all(np.array_equal(restored[k], weights[k]) for k in weights)
    assert tilesam.Session(folder / "nuclei.tif", cache=copy)._model is None


def test_other_weights_under_the_same_name_are_not_answered_from_the_cache(
    cached_image, tmp_path, tiny
) -> None:
    import torch

    folder, _ = cached_image
    changed = tiny.sam.state_dict()
    changed["mask_decoder.iou_token.weight"] = changed["mask_decoder.iou_token.weight"] + 1
    checkpoint = tmp_path / "tiny.pt"  # the name the cache was made for, other weights
    torch.save(changed, checkpoint)
    with pytest.raises(tilesam.TileSAMError, match="weights_sha256"):
        tilesam.Session(folder / "nuclei.tif", checkpoint, folder / "c.zarr")


def test_decoder_weights_whose_layout_was_changed_are_not_used(cached_image, tmp_path) -> None:
    folder, _ = cached_image
    copy = tmp_path / "c.zarr"
    shutil.copytree(folder / "c.zarr", copy)
    store = EmbeddingStore.open(copy)
    assert store.info()["decoder_bytes"] > 1e6
    array = zarr.open_array(str(copy / "decoder"), mode="r+")
    entries = array.attrs["entries"]
    # Two weights of the same shape under each other's names: the values still check out.
    q, k = (
        next(i for i, (name, _) in enumerate(entries) if name.endswith(f"layers.0.{p}.weight"))
        for p in ("cross_attn_token_to_image.q_proj", "cross_attn_token_to_image.k_proj")
    )
    entries[q][0], entries[k][0] = entries[k][0], entries[q][0]
    array.attrs["entries"] = entries
    assert EmbeddingStore.open(copy).read_decoder() is None
    assert tilesam.Session(folder / "nuclei.tif", cache=copy)._model is not None


def test_weights_that_change_on_disk_after_opening_are_refused(tiny, tmp_path) -> None:
    import torch

    image = np.tile(tifffile.imread(SAMPLES / "nuclei.tif"), (2, 2))
    checkpoint = tmp_path / "mine.pt"
    torch.save(tiny.sam.state_dict(), checkpoint)
    cache = tmp_path / "c.zarr"
    tilesam.Session(image, checkpoint, cache, tile_size=256).embed(progress=False)
    EmbeddingStore.open(cache).discard_tile(0, 0, 0)
    session = tilesam.Session(image, checkpoint, cache)
    assert session._model is None
    changed = tiny.sam.state_dict()
    changed["image_encoder.neck.0.weight"] = changed["image_encoder.neck.0.weight"] * 1.5
    torch.save(changed, checkpoint)
    with pytest.raises(tilesam.TileSAMError, match="changed on disk since this session"):
        session.segment(points=[(20, 20)])  # the missing tile would be embedded
    assert not EmbeddingStore.open(cache).is_done(0, 0, 0)


def test_a_fine_tuned_tiny_decodes_from_its_cache_at_the_thresholds_it_loads_with(
    tiny, tmp_path
) -> None:
    import torch

    image = np.tile(tifffile.imread(SAMPLES / "nuclei.tif"), (2, 2))
    checkpoint = tmp_path / "fine_tuned.pt"  # a file of tiny's architecture, no registry name
    torch.save(tiny.sam.state_dict(), checkpoint)
    cache = tmp_path / "c.zarr"
    loaded = tilesam.Session(image, checkpoint, cache, tile_size=256)
    loaded.embed(progress=False)
    reopened = tilesam.Session(image, checkpoint, cache)
    assert reopened._model is None and isinstance(reopened.predictor, NumpyPredictor)
    thresholds = (tiny.mask_threshold, tiny.box_mask_threshold)
    assert (loaded.model.mask_threshold, loaded.model.box_mask_threshold) == thresholds
    light = reopened.predictor
    assert (light.mask_threshold, light.box_mask_threshold) == thresholds


def test_the_click_and_propagation_modules_import_without_torch() -> None:
    code = (
        "import sys, tilesam.segment.session, tilesam.volumes.propagate, tilesam.cli; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("whole_grid", [False, True], ids=["windows", "whole-grid"])
def test_features_prompted_often_prepare_their_image_side_once(
    tiny, nuclei_field, whole_grid
) -> None:
    """Features decoded a few times (a slice in propagation, walked again) skip the first
    block's image-only projections; prompted often, their image side is prepared once and
    kept: the numbers agree to rounding, and the kept side gives them bitwise. On `tiny`'s
    windows and on the whole grid, as SAM's and MobileSAM's weights decode."""
    embedding, _ = nuclei_field
    cached = replace(embedding, features=np.asarray(embedding.features, dtype=np.float32))
    predictor = _numpy(tiny)
    if whole_grid:
        predictor.decoder_windows = ()

    def side() -> object:
        (kept,) = [seen.value for seen in predictor._reuse._seen.values()]  # one window
        return kept

    first = predictor.predict(cached, points=[(60, 70)])
    for _ in range(PREPARE_AT_USE - 2):
        predictor.predict(cached, points=[(60, 70)])
        assert side().first is None
    prepared_answer = predictor.predict(cached, points=[(60, 70)])
    prepared = side()
    assert prepared.first is not None
    again = predictor.predict(cached, points=[(60, 70)])
    assert side() is prepared
    np.testing.assert_array_equal(again.scores, prepared_answer.scores)
    np.testing.assert_array_equal(again.low_res_logits, prepared_answer.low_res_logits)
    np.testing.assert_allclose(prepared_answer.scores, first.scores, atol=1e-5)
    np.testing.assert_allclose(prepared_answer.low_res_logits, first.low_res_logits, atol=1e-3)
    assert (prepared_answer.masks == first.masks).mean() > 0.999
