"""The public model API: every mistake a user can make is a TileSAMError saying what to do,
and the supported inputs work.

The model is the small SAM fixture checkpoint (random weights, full-size decoder); the encoder
takes a second or two per image on a CPU, so one embedding is shared by the module.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tilesam
from tilesam.models.registry import MODELS
from tilesam.models.weights import CACHE_ENV, model_file, resolve_weights

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
CHECKPOINT = FIXTURES / "sam1_small_fp16.pth"
Error = tilesam.TileSAMError


@pytest.fixture(scope="module")
def model() -> tilesam.SamModel:
    return tilesam.load_model(checkpoint=CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """The fixtures' 300 x 420 RGB uint8 image."""
    with np.load(FIXTURES / "sam1_small_reference.npz") as ref:
        return ref["image"]


@pytest.fixture(scope="module")
def embedding(model: tilesam.SamModel, image: np.ndarray) -> tilesam.ImageEmbedding:
    return model.embed(image)


# --- loading ----------------------------------------------------------------------------


def test_missing_checkpoint_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "sam_vit_b.pth"
    with pytest.raises(Error, match="does not exist") as err:
        tilesam.load_model(checkpoint=path)
    assert str(path) in str(err.value)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    data = CHECKPOINT.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(Error, match="truncated") as err:
        tilesam.load_model(checkpoint=path)
    assert "download it again" in str(err.value)


@pytest.mark.parametrize(
    "text",
    # Two texts because the weights-only unpickler fails differently on them.
    ["hello, this is not a checkpoint\n", "model weights: none\n"],
    ids=["memo_lookup", "bad_opcode"],
)
def test_text_file_is_not_a_checkpoint(text: str, tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text(text)
    with pytest.raises(Error, match="not a PyTorch checkpoint") as err:
        tilesam.load_model(checkpoint=path)
    # Advising to unpickle (run code from) an unknown file would be the wrong fix.
    assert "trust_checkpoint" not in str(err.value)


def test_checkpoint_of_another_architecture() -> None:
    with pytest.raises(Error) as err:
        tilesam.load_model("vit_t", checkpoint=CHECKPOINT)
    message = str(err.value)
    assert "vit_t" in message and "tiny_vit" in message and "vit model" in message
    assert "matching name" in message


def test_a_tiny_checkpoint_alone_keeps_tinys_thresholds(tmp_path: Path) -> None:
    """A fine-tuned ``tiny`` passed as a file decodes as ``tiny`` does, not at SAM's 0."""
    copy = tmp_path / "fine_tuned.pt"
    shutil.copyfile(model_file("tiny", None)[0], copy)
    tiny, alone = tilesam.load_model("tiny"), tilesam.load_model(checkpoint=copy)
    thresholds = (tiny.mask_threshold, tiny.box_mask_threshold)
    assert thresholds != (0.0, None)
    assert (alone.mask_threshold, alone.box_mask_threshold) == thresholds
    sam = tilesam.load_model(checkpoint=CHECKPOINT, device="cpu")
    assert (sam.mask_threshold, sam.box_mask_threshold) == (0.0, None)


def test_state_dict_missing_keys(tmp_path: Path) -> None:
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    dropped = [k for k in state if k.startswith("image_encoder.neck.1.")]
    for key in dropped:
        del state[key]
    path = tmp_path / "incomplete.pth"
    torch.save(state, path)
    with pytest.raises(Error, match=f"{len(dropped)} missing keys") as err:
        tilesam.load_model(checkpoint=path)
    assert dropped[0] in str(err.value)


def test_unknown_model_name() -> None:
    with pytest.raises(Error, match="Unknown model name 'vit_q'") as err:
        tilesam.load_model("vit_q")
    message = str(err.value)
    assert all(name in message for name in ("tiny", "vit_b", "vit_t", "micro_sam:vit_b_lm"))


def test_registry_weights_absent_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    entry = MODELS["vit_b"]
    with pytest.raises(Error) as err:
        resolve_weights(entry, download=False)
    message = str(err.value)
    assert entry.filename in message and str(tmp_path) in message and entry.url in message


def test_registry_model_without_url(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(Error) as err:
        tilesam.load_model("medsam")
    message = str(err.value)
    assert MODELS["medsam"].filename in message and str(tmp_path) in message


# --- images -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(2, 3, 32, 32), (32,), (32, 40, 5)], ids=["4d", "1d", "5_channels"]
)
def test_image_of_wrong_dimensionality(model: tilesam.SamModel, shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    with pytest.raises(Error, match=r"Expected a 2D image") as err:
        model.embed(image)
    assert str(shape) in str(err.value)


def test_nan_image(model: tilesam.SamModel) -> None:
    with pytest.raises(Error, match="no finite pixel values"):
        model.embed(np.full((32, 40), np.nan, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_constant_image(model: tilesam.SamModel, dtype: type) -> None:
    with pytest.raises(Error, match="constant"):
        model.embed(np.full((32, 40), 7, dtype=dtype))


def _assert_usable(model: tilesam.SamModel, emb: tilesam.ImageEmbedding, shape) -> None:
    assert emb.original_size == shape
    assert torch.isfinite(emb.features).all()
    result = model.predict(emb, points=[(shape[0] // 2, shape[1] // 2)], labels=[1])
    assert np.isfinite(result.scores).all() and np.isfinite(result.low_res_logits).all()
    assert result.mask().shape == shape


def test_uint16_grayscale_image(model: tilesam.SamModel, image: np.ndarray) -> None:
    gray = (image.mean(axis=-1) * 257).astype(np.uint16)  # a 2D 16-bit image
    _assert_usable(model, model.embed(gray), gray.shape)


def test_float32_rgb_image(model: tilesam.SamModel, image: np.ndarray) -> None:
    rgb = image.astype(np.float32) / 255 - 0.3  # (H, W, 3), negative values included
    _assert_usable(model, model.embed(rgb), rgb.shape[:2])


def test_uint8_rgb_image(model, image, embedding) -> None:
    _assert_usable(model, embedding, image.shape[:2])


def test_embed_batch_equals_embed(model, image, embedding) -> None:
    batch = model.embed_batch([image, image, image])
    assert len(batch) == 3
    for emb in batch:
        assert emb.original_size == embedding.original_size
        assert emb.input_size == embedding.input_size
        torch.testing.assert_close(emb.features, embedding.features, atol=1e-4, rtol=1e-4)


# --- prompts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "point",
    [(-1, 10), (10, -0.5), (300, 10), (10, 420), (np.nan, 10)],
    ids=["negative_y", "negative_x", "y_at_height", "x_at_width", "nan"],
)
def test_point_outside_image(model, embedding, point) -> None:
    with pytest.raises(Error, match="outside the image") as err:
        model.predict(embedding, points=[(100, 100), point], labels=[1, 1])
    assert "(300, 420)" in str(err.value)


def test_points_not_pairs(model, embedding) -> None:
    with pytest.raises(Error, match=r"\(y, x\) pairs"):
        model.predict(embedding, points=[(10, 20, 30)], labels=[1])


@pytest.mark.parametrize("labels", [[1], [1, 1, 0], [1, 2]], ids=["too_few", "too_many", "value_2"])
def test_bad_labels(model, embedding, labels) -> None:
    with pytest.raises(Error, match="labels must hold one 1 .positive. or 0 .negative. per point"):
        model.predict(embedding, points=[(10, 20), (30, 40)], labels=labels)


@pytest.mark.parametrize("points", [None, []], ids=["none", "empty_list"])
def test_empty_prompt(model, embedding, points) -> None:
    with pytest.raises(Error, match="Empty prompt"):
        model.predict(embedding, points=points)


@pytest.mark.parametrize(
    "box",
    [(50, 60, 50, 90), (50, 60, 80, 60), (80, 60, 50, 90)],
    ids=["zero_height", "zero_width", "inverted"],
)
def test_empty_box(model, embedding, box) -> None:
    with pytest.raises(Error, match=r"is empty: it must be \(y0, x0, y1, x1\)") as raised:
        model.predict(embedding, box=box)
    assert f"box {[float(v) for v in box]} is empty" in str(raised.value)  # plain numbers


@pytest.mark.parametrize(
    ("box", "clipped"),
    [((-5, 0, 50, 50), (0, 0, 50, 50)), ((0, 0, 301, 50), (0, 0, 300, 50)),
     ((0, 400, 50, 421), (0, 400, 50, 420))],
    ids=["above", "below", "right"],
)  # fmt: skip
def test_a_box_past_the_edge_is_clipped_and_said_once(model, embedding, box, clipped) -> None:
    with pytest.warns(tilesam.errors.TileSAMWarning, match="clipped to"):
        past = model.predict(embedding, box=box)
    inside = model.predict(embedding, box=clipped)
    # The two may decode by different paths (features prepared on their later uses): equal
    # to rounding.
    np.testing.assert_allclose(past.scores, inside.scores, rtol=0, atol=1e-6)


@pytest.mark.parametrize("box", [(-50, 0, -5, 50), (300, 0, 350, 50), (0, 420, 50, 500)])
def test_a_box_wholly_outside_the_image_is_refused(model, embedding, box) -> None:
    with pytest.raises(Error, match=r"lies outside the image of shape \(300, 420\)"):
        model.predict(embedding, box=box)


def test_box_of_wrong_length(model, embedding) -> None:
    with pytest.raises(Error, match=r"box must be \(y0, x0, y1, x1\)"):
        model.predict(embedding, box=(10, 10, 50))


@pytest.mark.parametrize("shape", [(64, 64), (3, 256, 256), (256, 255)])
def test_mask_input_of_wrong_shape(model, embedding, shape) -> None:
    with pytest.raises(Error, match=r"mask_input must be low-res logits of shape \(256, 256\)"):
        model.predict(embedding, points=[(10, 20)], labels=[1], mask_input=np.zeros(shape))


# --- predictions --------------------------------------------------------------------------


def test_mask_is_best_of_masks(model, embedding) -> None:
    result = model.predict(embedding, points=[(80, 100)], labels=[1])
    assert result.masks.shape == (3, 300, 420)
    assert result.best == int(np.argmax(result.scores))
    np.testing.assert_array_equal(result.mask(), result.masks[result.best])
    np.testing.assert_array_equal(result.mask(1), result.masks[1])


def test_single_mask(model, embedding) -> None:
    result = model.predict(embedding, points=[(80, 100)], labels=[1], multimask=False)
    assert result.scores.shape == (1,) and result.low_res_logits.shape == (1, 256, 256)
    assert result.masks.shape == (1, 300, 420)


def test_box_and_mask_prompts(model, embedding) -> None:
    first = model.predict(embedding, box=(140, 240, 260, 360), multimask=False)
    refined = model.predict(
        embedding, points=[(200, 300)], labels=[1], mask_input=first.low_res_logits[0]
    )
    assert refined.masks.shape == (3, 300, 420)
    assert np.isfinite(refined.low_res_logits).all()
