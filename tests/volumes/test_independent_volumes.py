"""Propagation on volumes no rule was chosen on (issue #24): the independent generator of
:mod:`tilesam.evaluate.volume_generator`, and a walk with the bundled ``tiny`` on its CT."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tilesam.errors import TileSAMWarning
from tilesam.evaluate.simulated_prompts import middle_slice_point
from tilesam.evaluate.volume_generator import FAMILIES, make_volume, write_volume
from tilesam.io import open_image
from tilesam.volumes.propagate import propagate_mask


def test_the_generator_is_reproducible_and_writes_its_geometry(tmp_path) -> None:
    kinds = {"ct": "int16", "micro8": "uint8", "micro16": "uint16"}
    for family in FAMILIES:
        volume = make_volume(family, 2)
        again = make_volume(family, 2)
        np.testing.assert_array_equal(volume.image, again.image)
        assert volume.image.dtype.name == kinds[family]
        assert set(np.unique(volume.labels)) == {0, *volume.names}
        source = open_image(write_volume(volume, tmp_path))
        assert source.shape == volume.image.shape
        np.testing.assert_allclose(source.spacing, volume.spacing, rtol=1e-5)
    assert not np.array_equal(make_volume("ct", 1).image, make_volume("ct", 2).image)
    ct = open_image(tmp_path / "ct-2.nii.gz")
    np.testing.assert_allclose(np.reshape(ct.direction, (3, 3)), np.diag([1.0, -1.0, 1.0]))


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    volume = make_volume("ct", 1)
    return volume, write_volume(volume, tmp_path_factory.mktemp("independent"))


def test_an_organ_is_followed_past_the_seed_s_neighbours(ct, tmp_path) -> None:
    """The kidney pressed against the liver of the independent CT (flipped, anisotropic),
    one click on its middle slice, soft-tissue window, the bundled `tiny`: the walks go on
    well past the seed's neighbours with the default rules, and without a warning."""
    volume, path = ct
    truth = volume.labels == 2
    z, y, x = middle_slice_point(truth)
    reach = (z - 8, z + 9)  # a range around the seed: only its slices are embedded
    options = {"points": [(z, y, x)], "window": "soft-tissue", "slice_range": reach}
    options["cache"] = tmp_path / "ct.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TileSAMWarning)  # no early stop
        labels = propagate_mask(path, **options)
    found = np.flatnonzero(labels.any(axis=(1, 2)))
    assert found[0] <= z - 4 and found[-1] >= z + 4
    inside, got = truth[reach[0] : reach[1]], labels[reach[0] : reach[1]] > 0
    assert 2 * (got & inside).sum() / (got.sum() + inside.sum()) > 0.75  # 0.88 measured
    # A threshold the decoder's scores never reach ends both walks at once, and says so.
    with pytest.warns(TileSAMWarning, match=r"to go further, lower StopRules.min_score"):
        early = propagate_mask(path, rules={"min_score": 0.99}, **options)
    assert np.flatnonzero(early.any(axis=(1, 2))).tolist() == [z]
