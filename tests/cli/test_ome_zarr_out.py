"""``--out X.ome.zarr``: `segment` and `propagate` write OME-Zarr that `tilesam.open_image`
reads back with the source's geometry (spacing as scale, origin as translation)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tilesam.cli import main
from tilesam.io import open_image
from tilesam.models.registry import ARCHITECTURES, build_sam

SPACING, ORIGIN = (2.5, 0.8, 0.7), (-40.0, 12.0, 30.5)  # (z, y, x), as open_image reports


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A random `tiny` checkpoint and a small NIfTI volume with its own spacing and origin."""
    root = tmp_path_factory.mktemp("ome_out")
    torch.manual_seed(0)
    torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), root / "random0.pt")
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 200, (3, 96, 128)).astype(np.int16)
    volume[:, 30:70, 40:90] += 300  # an object, so that the seed has something to follow
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(SPACING[::-1])  # ITK's order is (x, y, z)
    image.SetOrigin(ORIGIN[::-1])
    sitk.WriteImage(image, str(root / "volume.nii.gz"))
    seed = np.zeros(volume.shape, np.uint8)
    seed[1, 35:65, 45:85] = 3
    labels = sitk.GetImageFromArray(seed)
    labels.CopyInformation(image)
    sitk.WriteImage(labels, str(root / "seed.nii.gz"))
    return root


def _main(command: str, root) -> int:
    return main([word.format(root=root) for word in command.split()])


def test_propagate_writes_ome_zarr_with_the_volume_geometry(root, capsys) -> None:
    command = (
        "propagate {root}/volume.nii.gz --checkpoint {root}/random0.pt --cache {root}/v.zarr "
        "--mask {root}/seed.nii.gz --out {root}/labels.ome.zarr"
    )
    assert _main(command, root) == 0, capsys.readouterr().err
    back = open_image(root / "labels.ome.zarr")
    assert back.axes == "ZYX" and back.spatial_shape == (3, 96, 128)
    np.testing.assert_allclose(back.spacing, SPACING)
    np.testing.assert_allclose(back.origin, ORIGIN)
    labels = back.read()
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 3} and labels[1].any()
    # Run again: the finished image is replaced by the new one, nothing else is left.
    assert _main(command, root) == 0
    np.testing.assert_array_equal(open_image(root / "labels.ome.zarr").read(), labels)
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]


def test_segment_writes_an_ome_zarr_mask_of_the_slice(root, capsys) -> None:
    command = (
        "segment {root}/volume.nii.gz --checkpoint {root}/random0.pt --cache {root}/v.zarr "
        "--z 1 --box 30,40,70,90 --out {root}/mask.ome.zarr"
    )
    assert _main(command, root) == 0, capsys.readouterr().err
    assert "-> " in capsys.readouterr().out
    back = open_image(root / "mask.ome.zarr")
    assert back.axes == "YX" and back.spatial_shape == (96, 128)
    np.testing.assert_allclose(back.spacing, SPACING[1:])
    np.testing.assert_allclose(back.origin, ORIGIN[1:])
    assert set(np.unique(back.read())) <= {0, 255}


def test_an_ome_zarr_out_does_not_replace_another_folder(root, capsys) -> None:
    (root / "notes.ome.zarr").mkdir()
    (root / "notes.ome.zarr" / "keep.txt").write_text("mine")
    command = (
        "segment {root}/volume.nii.gz --checkpoint {root}/random0.pt --point 50,60 "
        "--out {root}/notes.ome.zarr"
    )
    assert _main(command, root) == 2
    assert "not an OME-Zarr image" in capsys.readouterr().err
    assert (root / "notes.ome.zarr" / "keep.txt").read_text() == "mine"
