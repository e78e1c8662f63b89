"""Segment everything with a SAM 2.1 model: its clicks are decoded one at a time (its decoder
also takes the high-resolution features), and give the masks a click alone gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tilesam
from tilesam.automatic.batch import decode_clicks
from tilesam.decode.prompt import Prompt
from tilesam.samples import load_sample

CHECKPOINT = Path(__file__).parents[1] / "data" / "fixtures" / "sam2_small_fp16.pt"
OPEN = {"mode": "grid", "points_per_side": 4, "min_score": 0.0, "min_stability": 0.0}


@pytest.fixture(scope="module")
def sam2():
    return tilesam.load_model(checkpoint=CHECKPOINT, device="cpu")


def test_a_sam2_model_segments_everything(sam2, tmp_path) -> None:
    image = load_sample("nuclei")[0]
    session = tilesam.Session(image, sam2, tmp_path / "nuclei.zarr")
    result = session.segment_everything(min_size=0, **OPEN)
    labels = result.labels
    assert result.n_objects >= 1 and labels.shape == image.shape
    assert sorted(np.unique(labels[labels > 0])) == list(range(1, result.n_objects + 1))
    assert (result.table["area"] > 0).all()


def test_sam2_clicks_decoded_for_everything_equal_single_clicks(sam2) -> None:
    emb = sam2.embed(load_sample("nuclei")[0])
    points = np.array([[40.0, 60.0], [128.0, 128.0], [200.0, 30.0]])
    preds = decode_clicks(sam2, emb, points)
    for point, pred in zip(points, preds, strict=True):
        alone = sam2.predict_prompt(emb, Prompt(point[None], np.ones(1, np.int64)))
        np.testing.assert_array_equal(pred.scores, alone.scores)
        for index in range(3):
            np.testing.assert_array_equal(pred.mask(index), alone.mask(index))
