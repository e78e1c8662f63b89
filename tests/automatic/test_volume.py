"""Volumes with the bundled `tiny`: each slice segmented, pieces linked into 3D objects
with one id each, the labels and table written with the volume's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

import tilesam
from tilesam.io import open_image


def test_a_volume_comes_back_as_3d_objects_with_one_id_each(tiny, make_discs, tmp_path) -> None:
    image, truth, grid = make_discs(tiles=2)  # 480 x 480, 9 discs, 4 on borders
    images, truths = [], []
    for z in range(3):  # objects drift by 2 pixels a slice; disc 9 ends after slice 1
        shift = (2 * z, z)
        images.append(np.roll(image, shift, axis=(0, 1)))
        t = np.roll(truth, shift, axis=(0, 1))
        if z == 2:  # the disc and its blurred rim painted over with background
            gone = ndimage.binary_dilation(t == 9, iterations=6)
            images[-1][gone] = np.random.default_rng(z).normal(25, 6, gone.sum()).clip(0, 255)
            t[t == 9] = 0
        truths.append(t)
    volume, truth3d = np.stack(images), np.stack(truths)
    path = tmp_path / "stack.tif"
    metadata = {"spacing": 3.0, "axes": "ZYX"}
    tifffile.imwrite(path, volume, imagej=True, resolution=(2, 2), metadata=metadata)
    session = tilesam.Session(path, tiny, tile_size=grid.tile_size, halo=grid.halo)
    result = session.segment_everything(mode="grid", points_per_side=12)
    labels = result.labels
    assert result.is_volume and labels.shape == truth3d.shape
    # every true 3D object is one found id, the same on every slice it is on
    for k in range(1, 10):
        ids, counts = np.unique(labels[truth3d == k], return_counts=True)
        assert ids[np.argmax(counts)] > 0 and counts.max() > 0.8 * counts.sum()
        assert len(set(ids[ids > 0].tolist())) == 1
    assert result.n_objects == 9
    table = result.table
    assert list(table["n_slices"]).count(3) == 8 and list(table["n_slices"]).count(2) == 1
    row = table[table["n_slices"] == 2].iloc[0]
    assert (row["bbox_z0"], row["bbox_z1"]) == (0, 2)
    assert row["volume_physical"] == pytest.approx(row["volume"] * 0.5 * 0.5 * 3.0)
    back = open_image(result.save(tmp_path / "labels.tif", like=session.source))
    assert np.array_equal(back.read(), labels)


def test_one_slice_of_a_volume_is_a_2d_result(tiny, make_discs) -> None:
    image, truth, grid = make_discs(tiles=2)
    volume = np.stack([np.zeros_like(image), image])
    session = tilesam.Session(volume, tiny, tile_size=grid.tile_size, halo=grid.halo)
    result = session.segment_everything(mode="grid", z=1, points_per_side=12)
    assert result.labels.shape == image.shape and result.n_objects == 9
    assert session.missing_tiles(1) == [] and len(session.missing_tiles(0)) == 4
