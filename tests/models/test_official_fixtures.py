"""Our model code computes the same function as the official SAM and MobileSAM code.

The fixtures (``tests/data/fixtures``, see its README) hold small, randomly initialised
checkpoints in the official formats and the official implementations' outputs for them.
The JSON prompts are in SAM's ``(x, y)`` order; our API takes ``(y, x)``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

import tilesam
from tilesam.decode.numpy_decoder import NumpyDecoder
from tilesam.decode.numpy_predictor import NumpyPredictor

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
NAMES = ("sam1_small", "vit_t_small")
TOLERANCE = 1e-3  # max abs difference of embeddings, logits and IoU
MIN_AGREEMENT = 0.995  # fraction of equal mask pixels (image resizers differ slightly)


def _prompts(name: str) -> dict[str, dict]:
    return json.loads((FIXTURES / f"{name}_prompts.json").read_text())


CASES = [(name, prompt) for name in NAMES for prompt in _prompts(name)]


@functools.cache
def _load(name: str, precision: str = "float32") -> tuple[tilesam.SamModel, dict[str, np.ndarray]]:
    """Our model from the fixture checkpoint and the official outputs, loaded once."""
    checkpoint = FIXTURES / f"{name}_fp16.pth"
    model = tilesam.load_model(checkpoint=checkpoint, device="cpu", precision=precision)
    with np.load(FIXTURES / f"{name}_reference.npz") as npz:
        return model, dict(npz)


@functools.cache
def _numpy_predictor(name: str) -> NumpyPredictor:
    """The same model's decoder run by NumPy, from the weights a cache would keep."""
    model, _ = _load(name)
    weights, config = model.decoder_weights()
    return NumpyPredictor(NumpyDecoder(weights, config))


def _reference_embedding(ref: dict[str, np.ndarray]) -> tilesam.ImageEmbedding:
    return tilesam.ImageEmbedding(
        features=torch.from_numpy(ref["embedding"])[None],
        original_size=tuple(int(v) for v in ref["original_size"]),
        input_size=tuple(int(v) for v in ref["input_size"]),
    )


def _predict(
    model: tilesam.SamModel | NumpyPredictor,
    embedding: tilesam.ImageEmbedding,
    prompt: dict,
    earlier: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> tilesam.Prediction:
    """Run one JSON prompt, converting SAM's (x, y) to our (y, x).

    ``earlier`` maps the names of earlier prompts to their (low-res logits, IoU), for
    prompts that feed an earlier result back as the mask input.
    """
    points = labels = box = mask_input = None
    if prompt["point_coords"] is not None:
        points = np.asarray(prompt["point_coords"], dtype=np.float64)[:, ::-1]
        labels = prompt["point_labels"]
    if prompt["box"] is not None:
        x0, y0, x1, y1 = prompt["box"]
        box = (y0, x0, y1, x1)
    if prompt.get("mask_input") is not None:
        # The official run fed back the highest-IoU logits of the named earlier prompt.
        logits, iou = earlier[prompt["mask_input"].split("__")[0]]
        mask_input = logits[np.argmax(iou)]
    return model.predict(
        embedding,
        points=points,
        labels=labels,
        box=box,
        mask_input=mask_input,
        multimask=prompt["multimask_output"],
        keep_prompted=False,  # the official code returns the decoder's masks as they are
    )


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    assert ours.shape == theirs.shape
    return float((ours == theirs).mean())


@pytest.mark.parametrize("name", NAMES)
def test_encoder_matches_official(name: str) -> None:
    model, ref = _load(name)
    pixels = torch.from_numpy(ref["resized_uint8"]).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        features = model.sam.image_encoder(model.sam.preprocess(pixels))[0]
    diff = (features - torch.from_numpy(ref["embedding"])).abs().max().item()
    assert diff < TOLERANCE, f"{name}: encoder differs from the official by {diff:.2e}"


@pytest.mark.parametrize("runtime", ["torch", "numpy"])
@pytest.mark.parametrize(("name", "prompt_name"), CASES)
def test_decoder_matches_official(name: str, prompt_name: str, runtime: str) -> None:
    model, ref = _load(name)
    predictor = model if runtime == "torch" else _numpy_predictor(name)
    embedding = _reference_embedding(ref)
    prompts = _prompts(name)
    official = {p: (ref[f"{p}__low_res_logits"], ref[f"{p}__iou"]) for p in prompts}
    result = _predict(predictor, embedding, prompts[prompt_name], official)

    logits, iou = ref[f"{prompt_name}__low_res_logits"], ref[f"{prompt_name}__iou"]
    assert result.low_res_logits.shape == logits.shape
    assert np.abs(result.low_res_logits - logits).max() < TOLERANCE
    assert np.abs(result.scores - iou).max() < TOLERANCE
    agreement = _agreement(result.masks, ref[f"{prompt_name}__masks"])
    assert agreement >= MIN_AGREEMENT, f"masks agree on only {agreement:.4%} of pixels"


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_full_path_masks_match_official(name: str, precision: str) -> None:
    """Our preprocessing (resize, normalise) + encoder + decoder, from the original image;
    also with the encoder in bfloat16 (``precision="auto"`` on a GPU or an AMX CPU)."""
    model, ref = _load(name, precision)
    assert model.encoder_dtype == getattr(torch, precision)
    embedding = model.embed(ref["image"])
    assert embedding.input_size == tuple(ref["input_size"])
    assert embedding.original_size == tuple(ref["original_size"])
    ours: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for prompt_name, prompt in _prompts(name).items():  # refinements follow their source
        result = _predict(model, embedding, prompt, ours)
        ours[prompt_name] = (result.low_res_logits, result.scores)
        agreement = _agreement(result.masks, ref[f"{prompt_name}__masks"])
        assert agreement >= MIN_AGREEMENT, (
            f"{name}/{prompt_name}: masks agree on only {agreement:.4%} of pixels"
        )
