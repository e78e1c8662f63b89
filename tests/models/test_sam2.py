"""SAM 2.1 (image prompts): our model code computes the official function and loads the
official checkpoints.

The fixtures (``tests/data/fixtures``, see its README) hold a small, randomly initialised
SAM 2.1 in the official format and the official ``sam2`` package's outputs for it. Prompts
in the README are SAM's ``(x, y)``; our API takes ``(y, x)``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _sam2_fixture import CHECKPOINT, FIXTURES, REGISTRY_NAMES, SPECS
from PIL import Image

import tilesam
from tilesam.models.checkpoint import check_compatible, infer_architecture
from tilesam.models.registry import ARCHITECTURES, MODELS, build_sam
from tilesam.models.sam2 import MEMORY_MODULES, split_memory
from tilesam.models.sam2_model import Sam2Embedding, Sam2Model

TOLERANCE = 1e-3  # max abs difference of features, logits and IoU
MIN_AGREEMENT = 0.995  # fraction of equal mask pixels
Error = tilesam.TileSAMError


@functools.cache
def _load() -> tuple[Sam2Model, dict[str, np.ndarray]]:
    # The official outputs are float32: so is the encoder here (bfloat16 would differ by 1 %).
    model = tilesam.load_model(checkpoint=CHECKPOINT, device="cpu", precision="float32")
    with np.load(FIXTURES / "sam2_small_reference.npz") as npz:
        return model, dict(npz)


def _reference_embedding(ref: dict[str, np.ndarray]) -> Sam2Embedding:
    """The official image predictor's features for frame 0 (240 x 320)."""
    high_res = tuple(torch.from_numpy(ref[k])[None] for k in ("high_res_feat0", "high_res_feat1"))
    features = torch.from_numpy(ref["image_embed"])[None]
    return Sam2Embedding(features, (240, 320), (1024, 1024), high_res)


# The fixture's prompts: point (x=150, y=110) positive, three masks; box x 110..190,
# y 70..150, one mask.
PROMPTS = {
    "point": {"points": [(110, 150)], "labels": [1], "multimask": True},
    "box": {"box": (70, 110, 150, 190), "multimask": False},
}


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_decoder_matches_official(name: str) -> None:
    model, ref = _load()
    embedding = _reference_embedding(ref)
    # Twice: the second prompt on the same features runs on their prepared image tokens.
    for _ in range(2):
        result = model.predict(embedding, keep_prompted=False, **PROMPTS[name])
        logits = ref[f"{name}__low_res_logits"]
        assert result.low_res_logits.shape == logits.shape
        assert np.abs(result.low_res_logits - logits).max() < TOLERANCE
        assert np.abs(result.scores - ref[f"{name}__iou"]).max() < TOLERANCE
        agreement = float((result.masks == ref[f"{name}__masks"].astype(bool)).mean())
        assert agreement >= MIN_AGREEMENT, f"masks agree on only {agreement:.4%} of pixels"


def _official_video_frame(frame: np.ndarray, size: int) -> torch.Tensor:
    """A frame as the official video loader prepares it: PIL's default (bicubic) resize to
    ``size x size``, aspect ratio not kept, back to uint8; ``(1, 3, S, S)`` on 0..255."""
    resized = np.asarray(Image.fromarray(frame).resize((size, size)))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float()


def _frame3_logits(model: Sam2Model, embedding: Sam2Embedding) -> tuple[np.ndarray, float]:
    """The video predictor's output on its prompted frame: the best of three masks for the
    click (x=160, y=120), its logits resized to the frame; and that mask's IoU."""
    result = model.predict(embedding, points=[(120, 160)], labels=[1], keep_prompted=False)
    low_res = torch.from_numpy(result.low_res_logits[result.best])[None, None]
    logits = F.interpolate(low_res, (240, 320), mode="bilinear", align_corners=False)
    return logits[0, 0].numpy(), float(result.scores[result.best])


def test_encoder_matches_official_on_the_video_fixture() -> None:
    """Encoder, high-resolution features and decoder together: on the frame the video
    fixture was prompted on, the official video predictor has no memory yet and runs the
    image model's heads, so its logits there prove the whole image path from pixels the
    fixture fixes exactly (the official loader's resize, followed here, not in the product).
    """
    model, ref = _load()
    with torch.inference_mode():
        pixels = _official_video_frame(ref["frames_jpeg_decoded"][3], model.image_size)
        embedding = model._embeddings(pixels, [(240, 320)])[0]
    logits, _ = _frame3_logits(model, embedding)
    official = ref["video_logits_from_frame3_point"][3]
    assert np.abs(logits - official).max() < TOLERANCE
    agreement = float(((logits > 0) == ref["video_masks_from_frame3_point"][3]).mean())
    assert agreement >= MIN_AGREEMENT


def test_full_path_from_the_frame_matches_official() -> None:
    """Our own preprocessing (torch's bilinear resize of the frame, not PIL's bicubic) gives
    the official masks on the prompted frame."""
    model, ref = _load()
    embedding = model.embed(ref["frames_jpeg_decoded"][3])
    assert isinstance(embedding, Sam2Embedding)
    assert embedding.input_size == (1024, 1024) and embedding.original_size == (240, 320)
    assert [tuple(f.shape) for f in embedding.high_res_features] == [
        (1, 32, 256, 256),
        (1, 64, 128, 128),
    ]
    logits, _ = _frame3_logits(model, embedding)
    agreement = float(((logits > 0) == ref["video_masks_from_frame3_point"][3]).mean())
    assert agreement >= MIN_AGREEMENT, f"masks agree on only {agreement:.4%} of pixels"


@pytest.mark.xfail(
    strict=True,
    reason="The fixture's image-predictor features were not computed from "
    "frames_jpeg_decoded[0] as given (max diff 0.4, largest along the disc's edge: other "
    "pixels, e.g. the frame before JPEG). The encoder is proven on frame 3 instead.",
)
def test_image_fixture_features_from_frame0() -> None:
    model, ref = _load()
    embedding = model.embed(ref["frames_jpeg_decoded"][0])
    assert np.abs(embedding.features[0].numpy() - ref["image_embed"]).max() < TOLERANCE


# --- checkpoints --------------------------------------------------------------------------


def _meta_state(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in SPECS[name].items()}


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_built_model_has_the_official_keys_and_shapes(spec: str) -> None:
    """Every key and shape, the video memory's included (nothing is set aside)."""
    state = _meta_state(spec)
    with torch.device("meta"):
        sam = build_sam(ARCHITECTURES[REGISTRY_NAMES[spec]])
    ours = {k: tuple(v.shape) for k, v in sam.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in state.items()}
    assert {k.split(".")[0] for k in split_memory(state)[1]} == MEMORY_MODULES


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_official_keys_are_recognised(spec: str) -> None:
    state = _meta_state(spec)
    inferred = infer_architecture(state)
    assert inferred == ARCHITECTURES[REGISTRY_NAMES[spec]]
    with torch.device("meta"):
        sam = build_sam(inferred)
    check_compatible(sam.state_dict(), state, spec)


def test_registry_names() -> None:
    for name in REGISTRY_NAMES.values():
        entry = MODELS[name]
        assert entry.architecture == name and entry.url.endswith(f"/{name}.pt")


def test_sam2_checkpoint_under_a_sam1_name_is_refused() -> None:
    with pytest.raises(
        Error,
        match=r"hiera model \(SAM 2\.1 \(Hiera\)\), but 'vit_b' is a vit model \(SAM \(ViT\)\)",
    ):
        tilesam.load_model("vit_b", checkpoint=CHECKPOINT, device="cpu")


def test_sam1_checkpoint_under_a_sam2_name_is_refused() -> None:
    sam1 = FIXTURES / "sam1_small_fp16.pth"
    with pytest.raises(
        Error, match=r"vit model \(SAM \(ViT\)\), but 'sam2.1_hiera_tiny' is a hiera model \(SAM 2"
    ):
        tilesam.load_model("sam2.1_hiera_tiny", checkpoint=sam1, device="cpu")


def test_incomplete_sam2_checkpoint_is_refused(tmp_path: Path) -> None:
    state = torch.load(CHECKPOINT, weights_only=True)["model"]
    del state["sam_mask_decoder.conv_s0.weight"]
    path = tmp_path / "cut.pt"
    torch.save({"model": state}, path)
    with pytest.raises(Error, match="missing keys .*conv_s0"):
        tilesam.load_model(checkpoint=path, device="cpu")


# --- the model's face --------------------------------------------------------------------


def test_embedding_without_high_res_features_is_refused() -> None:
    model, ref = _load()
    plain = tilesam.ImageEmbedding(
        torch.from_numpy(ref["image_embed"])[None], (240, 320), (1024,) * 2
    )
    with pytest.raises(Error, match="high-resolution features"):
        model.predict(plain, points=[(110, 150)], labels=[1])


def test_card_and_numpy_decoder() -> None:
    model, _ = _load()
    card = model.card
    assert card.encoder == "hiera" and card.embedding_shape == (256, 64, 64)
    assert card.high_res_shapes == ((32, 256, 256), (64, 128, 128))
    with pytest.raises(Error, match="NumPy decoder"):
        model.decoder_weights()


def test_mask_input_refines() -> None:
    """An earlier prediction's low-res logits go back in as the mask input."""
    model, ref = _load()
    embedding = _reference_embedding(ref)
    first = model.predict(embedding, points=[(110, 150)], labels=[1])
    again = model.predict(
        embedding,
        points=[(110, 150)],
        labels=[1],
        mask_input=first.low_res_logits[first.best],
        multimask=False,
    )
    assert again.scores.shape == (1,) and again.masks.shape == (1, 240, 320)
