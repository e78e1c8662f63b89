"""LabelledImageFolder: pairing, formats, errors and splits, on real files."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from tilesam.errors import TileSAMError
from tilesam.evaluate.datasets import LabelledImage, LabelledImageFolder

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
MICROSCOPY = SHARED / "data" / "microscopy"


def _needs(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder} (only on the project's machines)")
    return folder


def _labels(shape=(24, 32), n=2) -> np.ndarray:
    labels = np.zeros(shape, np.uint16)
    for i in range(1, n + 1):
        labels[2 * i : 2 * i + 3, 3 * i : 3 * i + 4] = i
    return labels


def _image(shape=(24, 32), dtype=np.uint8) -> np.ndarray:
    return (np.arange(np.prod(shape)) % 200).astype(dtype).reshape(shape)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        iio.imwrite(path, array)
    else:
        rgb = array.ndim == 3 and array.shape[-1] == 3
        tifffile.imwrite(path, array, photometric="rgb" if rgb else "minisblack")
    return path


def test_separate_folders_same_names_tiff_and_png(tmp_path):
    _write(tmp_path / "img" / "a.tif", _image(dtype=np.uint16))
    _write(tmp_path / "img" / "b.png", _image((24, 32, 3)))
    _write(tmp_path / "lab" / "a.tif", _labels(n=3))
    _write(tmp_path / "lab" / "b.png", _labels().astype(np.uint8))
    _write(tmp_path / "lab" / "orphan.tif", _labels())  # ignored: no image
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    data = LabelledImageFolder(tmp_path / "img", tmp_path / "lab")
    assert data.names == ["a", "b"] and len(data) == 2 and data.ndim == 2
    a, b = data
    assert isinstance(a, LabelledImage)
    assert a.image.dtype == np.uint16 and a.image.shape == (24, 32)
    assert a.labels.dtype == np.uint32 and a.labels.max() == 3
    assert b.image.shape == (24, 32, 3)
    np.testing.assert_array_equal(b.labels, _labels())


@pytest.mark.parametrize("suffix", ["_labels", "_label", "_mask", "_masks"])
def test_label_suffixes_in_one_folder(tmp_path, suffix):
    _write(tmp_path / "cell1.tif", _image())
    _write(tmp_path / f"cell1{suffix}.png", _labels().astype(np.uint8))
    data = LabelledImageFolder(tmp_path, tmp_path)
    assert data.names == ["cell1"]
    assert data.files == [(tmp_path / "cell1.tif", tmp_path / f"cell1{suffix}.png")]


def test_suffixed_labels_in_separate_folder(tmp_path):
    _write(tmp_path / "img" / "x.png", _image())
    _write(tmp_path / "lab" / "x_mask.tif", _labels())
    _write(tmp_path / "img" / "y_mask.png", _image())  # an image that happens to end in _mask
    _write(tmp_path / "lab" / "y_mask.png", _labels().astype(np.uint8))
    data = LabelledImageFolder(tmp_path / "img", tmp_path / "lab")
    assert data.names == ["x", "y_mask"]
    assert [f[1].name for f in data.files] == ["x_mask.tif", "y_mask.png"]


def test_image_suffix_layout_and_default_labels_folder(tmp_path):
    for stem in ("s1", "s2"):
        _write(tmp_path / f"{stem}_image.png", _image((24, 32, 3)))
        _write(tmp_path / f"{stem}_labels.png", _labels().astype(np.uint8))
    data = LabelledImageFolder(tmp_path)
    assert data.names == ["s1_image", "s2_image"]
    assert [f[1].name for f in data.files] == ["s1_labels.png", "s2_labels.png"]


def test_palette_png_labels_keep_their_ids(tmp_path):
    labels = _labels(n=3).astype(np.uint8)
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    (tmp_path / "lab").mkdir()
    palette.save(tmp_path / "lab" / "p.png")
    _write(tmp_path / "img" / "p.png", _image())
    item = LabelledImageFolder(tmp_path / "img", tmp_path / "lab")[0]
    np.testing.assert_array_equal(item.labels, labels)


def test_rgba_png_image_loses_alpha(tmp_path):
    _write(tmp_path / "img" / "q.png", _image((24, 32, 4)))
    _write(tmp_path / "lab" / "q.png", _labels().astype(np.uint8))
    assert LabelledImageFolder(tmp_path / "img", tmp_path / "lab")[0].image.shape == (24, 32, 3)


def test_volumes_are_allowed_when_all_are_3d(tmp_path):
    _write(tmp_path / "img" / "v.tif", _image((5, 24, 32)))
    _write(tmp_path / "lab" / "v.tif", _labels((5, 24, 32)))
    data = LabelledImageFolder(tmp_path / "img", tmp_path / "lab")
    assert data.ndim == 3 and data[0].labels.shape == (5, 24, 32)


def test_two_files_make_one_pair(tmp_path):
    image = _write(tmp_path / "one.tif", _image())
    labels = _write(tmp_path / "truth.tif", _labels())
    data = LabelledImageFolder(image, labels)
    assert data.names == ["one"] and data[0].labels.max() == 2
    (tmp_path / "photo.gif").write_bytes(b"")
    with pytest.raises(TileSAMError, match="photo.gif is not a supported file"):
        LabelledImageFolder(tmp_path / "photo.gif", labels)


def test_missing_labels_name_the_image(tmp_path):
    _write(tmp_path / "img" / "a.tif", _image())
    _write(tmp_path / "img" / "b.tif", _image())
    _write(tmp_path / "lab" / "a.tif", _labels())
    with pytest.raises(TileSAMError, match=r"No label image for .*b\.tif.*b_labels.*or b itself"):
        LabelledImageFolder(tmp_path / "img", tmp_path / "lab")


def test_size_mismatch_names_both_files(tmp_path):
    _write(tmp_path / "img" / "a.tif", _image((24, 32, 3)))
    _write(tmp_path / "lab" / "a.tif", _labels((24, 30)))
    with pytest.raises(TileSAMError, match=r"lab/a\.tif has shape \(24, 30\).*img/a\.tif"):
        LabelledImageFolder(tmp_path / "img", tmp_path / "lab")


@pytest.mark.parametrize("broken", ["img/a.png", "lab/a_labels.png", "img/a.tif"])
def test_a_file_that_cannot_be_read_is_named(tmp_path, broken):
    ext = Path(broken).suffix
    _write(tmp_path / "img" / f"a{ext}", _image())
    _write(tmp_path / "lab" / "a_labels.png", _labels())
    (tmp_path / broken).write_bytes(b"not an image at all")
    with pytest.raises(TileSAMError, match=f"Cannot read .*{Path(broken).name}"):
        LabelledImageFolder(tmp_path / "img", tmp_path / "lab")


def test_empty_label_image_is_refused(tmp_path):
    _write(tmp_path / "img" / "a.png", _image())
    _write(tmp_path / "lab" / "a_labels.png", np.zeros((24, 32), np.uint8))
    with pytest.raises(TileSAMError, match=r"a_labels\.png has no objects"):
        LabelledImageFolder(tmp_path / "img", tmp_path / "lab")


def test_mixed_dimensionality_is_refused(tmp_path):
    _write(tmp_path / "img" / "flat.tif", _image())
    _write(tmp_path / "img" / "deep.tif", _image((4, 24, 32)))
    _write(tmp_path / "lab" / "flat.tif", _labels())
    _write(tmp_path / "lab" / "deep.tif", _labels((4, 24, 32)))
    with pytest.raises(TileSAMError, match=r"mixes .*flat\.tif \(2D\).*deep\.tif \(3D\)"):
        LabelledImageFolder(tmp_path / "img", tmp_path / "lab")


def test_folder_without_images_is_refused(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "readme.txt").write_text("nothing here")
    with pytest.raises(TileSAMError, match="No images found"):
        LabelledImageFolder(tmp_path / "img", tmp_path / "img")
    with pytest.raises(TileSAMError, match="does not exist"):
        LabelledImageFolder(tmp_path / "nowhere")


def test_ambiguous_and_non_integer_labels_are_refused(tmp_path):
    _write(tmp_path / "a.tif", _image())
    _write(tmp_path / "a_labels.tif", _labels())
    _write(tmp_path / "a_mask.tif", _labels())
    with pytest.raises(TileSAMError, match="Several label images match a.tif"):
        LabelledImageFolder(tmp_path)
    _write(tmp_path / "f" / "b.tif", _image())
    _write(tmp_path / "f" / "b_labels.tif", _labels().astype(np.float32) / 2)
    with pytest.raises(TileSAMError, match="fractional"):
        LabelledImageFolder(tmp_path / "f")


def test_split_is_reproducible_and_disjoint(tmp_path):
    for i in range(10):
        _write(tmp_path / f"im{i}.tif", _image())
        _write(tmp_path / f"im{i}_labels.tif", _labels())
    data = LabelledImageFolder(tmp_path)
    train, validation = data.split(0.3, seed=4)
    assert len(train) == 7 and len(validation) == 3
    assert sorted(train.names + validation.names) == sorted(data.names)
    again = data.split(0.3, seed=4)
    assert again[0].names == train.names and again[1].names == validation.names
    assert data.split(0.3, seed=5)[1].names != validation.names
    assert validation[0].labels.dtype == np.uint32
    assert data[2:5].names == data.names[2:5]
    with pytest.raises(TileSAMError, match="Cannot split"):
        data.split(1.0)


def test_nifti_slices_when_simpleitk_is_installed(tmp_path):
    sitk = pytest.importorskip("SimpleITK", reason="NIfTI support needs SimpleITK (optional)")
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(_image()), str(tmp_path / "img" / "n.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(_labels()), str(tmp_path / "lab" / "n.nii.gz"))
    item = LabelledImageFolder(tmp_path / "img", tmp_path / "lab")[0]
    assert item.name == "n" and item.labels.max() == 2


def test_dsb2018_crop_pairs_image_with_labels():
    data = LabelledImageFolder(_needs(MICROSCOPY / "dsb2018_crop"))
    assert data.names == ["image"]
    item = data[0]
    assert item.image.shape == (256, 256) and item.image.dtype == np.uint8
    assert item.labels.dtype == np.uint32 and len(np.unique(item.labels)) == 66


def test_coelho2009_layout():
    folder = _needs(MICROSCOPY / "coelho2009")
    data = LabelledImageFolder(folder, folder)
    assert len(data) == 32 and data.ndim == 2
    assert all(image.name.endswith("_image.png") for image, _ in data.files)
    assert all(labels.name.endswith("_labels.png") for _, labels in data.files)
    item = data[0]
    assert item.image.shape == (1030, 1349, 3)
    assert item.labels.shape == (1030, 1349) and item.labels.dtype == np.uint32
    assert item.labels.max() > 10
