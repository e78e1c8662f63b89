"""CT windows and percentile normalisation: what the encoder sees, and the cache signature.

The model has random weights (TileSAM's `tiny` architecture at a 256-pixel input): these
tests check which intensities reach the encoder and what the cache records, not masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tilesam.errors import TileSAMError
from tilesam.models.preprocess import CT_WINDOWS, intensity_range, normalize_intensity, window_range
from tilesam.segment.session import Session


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    """A small CT-like volume in Hounsfield units: air, soft tissue, a bone disc."""
    rng = np.random.default_rng(0)
    hu = np.full((3, 96, 96), -1000, np.int16)
    yy, xx = np.mgrid[:96, :96]
    hu[:, (yy - 48) ** 2 + (xx - 48) ** 2 < 40**2] = 40
    hu[:, (yy - 60) ** 2 + (xx - 48) ** 2 < 8**2] = 700
    return hu + rng.integers(-10, 10, hu.shape).astype(np.int16)


@pytest.mark.parametrize(
    ("name", "width", "level"),
    [("soft-tissue", 400, 40), ("lung", 1500, -600), ("brain", 80, 40),
     ("mediastinum", 350, 50), ("bone", 1800, 400), ("liver", 150, 30)],
)  # fmt: skip
def test_presets_are_the_documented_width_and_level(name, width, level) -> None:
    assert CT_WINDOWS[name] == (width, level)
    assert window_range(name) == (level - width / 2, level + width / 2)


def test_custom_and_bad_windows() -> None:
    assert window_range((400, 40)) == (-160.0, 240.0)
    with pytest.raises(TileSAMError, match="Unknown CT window 'lungs'.*soft-tissue, lung"):
        window_range("lungs")
    with pytest.raises(TileSAMError, match="width > 0"):
        window_range((0, 40))
    with pytest.raises(TileSAMError, match="name .* or \\(width, level\\)"):
        window_range((1, 2, 3))


def test_window_reaches_the_encoder_only_and_is_signed(ct, model, tmp_path) -> None:
    original = ct.copy()
    s = Session(ct, model, tmp_path / "lung.zarr", window="lung")
    assert s.intensity == (-1350.0, 150.0)
    assert s.signature["normalisation"] == {
        "method": "window", "window": "lung", "range": [-1350.0, 150.0]
    }  # fmt: skip
    # The embedding is the model's on the slice windowed to lung, and the volume is unchanged.
    expected = model.embed(ct[1], intensity=(-1350.0, 150.0)).features.half().float()
    assert torch.equal(torch.from_numpy(s.embedding(1, 0, 0).features), expected)
    np.testing.assert_array_equal(ct, original)
    # Bone saturates in the lung window but not in the bone window: a different input.
    bone = normalize_intensity(ct[1], window_range("bone"))
    assert normalize_intensity(ct[1], s.intensity).max() == 255 and bone.max() < 255
    # A cache made with another window is refused, naming the field.
    with pytest.raises(TileSAMError, match="normalisation.window: cache='lung', now='bone'"):
        Session(ct, model, tmp_path / "lung.zarr", window="bone")
    custom = Session(ct, model, tmp_path / "custom.zarr", window=(1500, -600))
    assert custom.intensity == s.intensity
    assert custom.signature["normalisation"]["window"] == [1500.0, -600.0]


def test_window_and_intensity_together_is_an_error(ct, model) -> None:
    with pytest.raises(TileSAMError, match="either intensity=.* or a CT window="):
        Session(ct, model, window="lung", intensity=(0, 100))
    with pytest.raises(TileSAMError, match="Unknown CT window"):
        Session(ct, model, window="abdomen")


def test_volumes_use_percentiles_of_nonzero_voxels(model) -> None:
    rng = np.random.default_rng(1)
    vol = np.zeros((4, 80, 80), np.uint16)  # zero padding around the sample, as in MR
    vol[:, 20:60, 20:60] = rng.integers(200, 1200, (4, 40, 40))
    s = Session(vol, model)
    assert s.signature["normalisation"]["method"] == "percentiles-nonzero"
    assert s.intensity == intensity_range(vol[vol > 0])
    assert s.intensity[0] > 200  # all voxels would give 0 as the low end
    flat = Session(vol[0], model)  # 2D images keep the plain percentiles
    assert flat.signature["normalisation"]["method"] == "percentiles"
    assert flat.intensity == intensity_range(vol[0]) and flat.intensity[0] == 0
