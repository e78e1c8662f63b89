"""The bundled default model ``tiny``: registered, verified on load, and it segments real nuclei.

The quality checks use a real, hand-annotated image the model never saw in training
(``sample_data/nuclei_heldout.tif``: 125 nuclei of another 2018 Data Science Bowl field than
the one in its training data). They guard the shipped weights: they fail if the weights
regress, stop loading as trained, or only remember their training image.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import tilesam
from tilesam.errors import TileSAMError
from tilesam.evaluate.simulated_prompts import box_from_mask, center_point
from tilesam.models.registry import MODELS
from tilesam.models.weights import bundled_path, file_sha256
from tilesam.samples import load_sample

ENTRY = MODELS["tiny"]
# The shipped weights give 0.80 (box) and 0.64 (one click) on this unseen image (0.85 and
# 0.68 on the training image `nuclei`); random weights give about 0.02. Without keeping only
# the prompted parts of the masks (keep_prompted=False) the box gives 0.62.
BOX_IOU_FLOOR = 0.75
POINT_IOU_FLOOR = 0.58
RAW_BOX_IOU_CEILING = 0.7


def test_tiny_ships_small_and_matches_its_registered_hash(tiny) -> None:
    path = bundled_path(ENTRY)
    assert path is not None and path.stat().st_size <= 10 * 2**20
    assert ENTRY.known_hash == f"sha256:{file_sha256(path)}"
    assert tiny.name == "tiny" and tiny.weights_hash == file_sha256(path)
    assert tiny.mask_threshold == ENTRY.mask_threshold < 0  # calibrated, see registry


def test_damaged_bundled_weights_are_refused(tmp_path, monkeypatch) -> None:
    damaged = tmp_path / "tiny.pt"
    shutil.copy(bundled_path(ENTRY), damaged)
    with open(damaged, "r+b") as handle:
        handle.seek(-64, 2)
        handle.write(bytes(64))
    monkeypatch.setattr("tilesam.models.weights.bundled_path", lambda entry: damaged)
    with pytest.raises(TileSAMError, match="installation is damaged"):
        tilesam.load_model()


def _ious(tiny, prompt, keep_prompted: bool = True) -> np.ndarray:
    image, labels = load_sample("nuclei_heldout")
    emb = tiny.embed(image)
    ious = []
    for i in np.unique(labels)[1:]:
        gt = labels == i
        mask = tiny.predict(emb, **prompt(gt), keep_prompted=keep_prompted).mask()
        ious.append((mask & gt).sum() / (mask | gt).sum())
    return np.array(ious)


def test_tiny_segments_real_nuclei_from_a_box(tiny) -> None:
    ious = _ious(tiny, lambda gt: {"box": box_from_mask(gt), "multimask": False})
    assert ious.mean() >= BOX_IOU_FLOOR
    # The decoder alone adds look-alike nuclei outside the box; keep_prompted removes them
    # (and, the mask clipped to the box, lets tiny's lower box threshold apply).
    raw = _ious(tiny, lambda gt: {"box": box_from_mask(gt), "multimask": False}, False)
    assert raw.mean() < RAW_BOX_IOU_CEILING < ious.mean()


def test_tiny_segments_real_nuclei_from_one_click(tiny) -> None:
    ious = _ious(tiny, lambda gt: {"points": [center_point(gt)]})
    assert ious.mean() >= POINT_IOU_FLOOR


def test_a_box_not_drawn_tight_takes_the_point_threshold(tiny) -> None:
    image, labels = load_sample("nuclei")
    emb = tiny.embed(image)
    gt = labels == 1
    y0, x0, y1, x1 = box_from_mask(gt)
    grown = (max(y0 - 3, 0), max(x0 - 3, 0), y1 + 3, x1 + 3)  # as propagation grows a box
    tight = tiny.predict(emb, box=grown, multimask=False)
    loose = tiny.predict(emb, box=grown, multimask=False, tight_box=False)
    assert tight.threshold == ENTRY.box_mask_threshold != loose.threshold == ENTRY.mask_threshold
    # The higher threshold keeps fewer pixels of the same logits.
    assert loose.mask().sum() < tight.mask().sum() and not (loose.mask() & ~tight.mask()).any()


def test_propagated_slices_take_the_point_threshold(tiny, tmp_path) -> None:
    from tilesam.segment.session import Session
    from tilesam.volumes.propagate import session_predictor
    from tilesam.volumes.walk import prompt_from_mask

    volume, truth = load_sample("nuclei_volume")
    session = Session(volume, tiny, tmp_path / "cache.zarr", slice_scale=3.0)
    z = int(np.argmax((truth == 1).sum(axis=(1, 2))))
    prompt = prompt_from_mask(truth[z] == 1)
    predicted = session_predictor(session)(z + 1, prompt)
    args = (prompt.points, prompt.labels, prompt.box)
    loose = session.segment(*args, z=z + 1, multimask=False, tight_box=False)
    tight = session.segment(*args, z=z + 1, multimask=False)
    assert np.array_equal(predicted.mask, loose.mask)
    assert loose.mask.sum() < tight.mask.sum()
