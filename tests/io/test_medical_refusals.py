"""Medical volumes whose geometry would be read wrong are refused, saying what is wrong.

A NIfTI with a zero, negative or NaN voxel size is written by SimpleITK and its header bytes
patched, as a broken tool leaves it. DICOM series are the real dcmqi CT slices from
../shared/data/medical (skipped when absent), copied to a temporary folder with a file
removed; longer series are made of those files with their position, instance number and
SOP instance UID edited in place, so every file stays the scanner's own but for those tags.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tilesam.errors import TileSAMError
from tilesam.io import open_image, write_labels

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "medical"
CT = DATA / "dcmqi_ct3slice" / "ct"
needs_ct = pytest.mark.skipif(not CT.is_dir(), reason=f"real DICOM test data not found at {CT}")

# -- NIfTI voxel sizes ----------------------------------------------------------------------

_PIXDIM = 76  # offset of pixdim[8] (float32) in a NIfTI-1 header


def _nifti_with_pixdim(tmp_path: Path, name: str, axis: int, value: float) -> Path:
    """A 4 x 5 x 6 (z, y, x) NIfTI-1 written by SimpleITK, pixdim[axis] set to `value`."""
    image = sitk.GetImageFromArray(np.arange(120, dtype=np.int16).reshape(4, 5, 6))
    image.SetSpacing((0.8, 0.9, 2.5))
    plain = tmp_path / "plain.nii"
    sitk.WriteImage(image, str(plain))
    header = bytearray(plain.read_bytes())
    assert struct.unpack_from("<i", header)[0] == 348  # a NIfTI-1 header, little-endian
    struct.pack_into("<f", header, _PIXDIM + 4 * axis, value)
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(header)) if name.endswith(".gz") else bytes(header))
    return path


@pytest.mark.parametrize(
    ("name", "axis", "value", "shown"),
    [
        ("zero_z.nii", 3, 0.0, "pixdim[3] = 0 (the voxel size along z"),
        ("negative_z.nii.gz", 3, -2.0, "pixdim[3] = -2 (the voxel size along z"),
        ("zero_x.nii.gz", 1, 0.0, "pixdim[1] = 0 (the voxel size along x"),
        ("nan_y.nii", 2, float("nan"), "pixdim[2] = nan (the voxel size along y"),
    ],
)
def test_nifti_with_invalid_voxel_size_is_refused(tmp_path, name, axis, value, shown) -> None:
    path = _nifti_with_pixdim(tmp_path, name, axis, value)
    # What SimpleITK alone makes of it: a made-up positive spacing, without a word.
    assert min(sitk.ReadImage(str(path)).GetSpacing()) > 0
    with pytest.raises(TileSAMError) as err:
        open_image(path)
    message = str(err.value)
    assert shown in message and name in message
    assert "Write the true voxel size into the header" in message


def test_nifti_voxel_size_of_a_single_slice_axis_is_not_checked(tmp_path) -> None:
    """2D images stored as NIfTI often leave pixdim 0 on their one slice: nothing to space."""
    image = sitk.GetImageFromArray(np.arange(30, dtype=np.int16).reshape(1, 5, 6))
    image.SetSpacing((0.8, 0.9, 2.5))
    path = tmp_path / "single.nii"
    sitk.WriteImage(image, str(path))
    header = bytearray(path.read_bytes())
    struct.pack_into("<f", header, _PIXDIM + 12, 0.0)
    path.write_bytes(bytes(header))
    src = open_image(path)
    assert src.shape == (1, 5, 6)
    np.testing.assert_allclose(src.spacing[1:], (0.9, 0.8), rtol=1e-6)


def test_nifti_with_valid_voxel_size_reads_as_before(tmp_path) -> None:
    path = _nifti_with_pixdim(tmp_path, "valid.nii.gz", 3, 2.5)
    src = open_image(path)
    np.testing.assert_allclose(src.spacing, (2.5, 0.9, 0.8), rtol=1e-6)
    np.testing.assert_array_equal(src.read(), np.arange(120).reshape(4, 5, 6))


# -- DICOM series with a missing slice -----------------------------------------------------


def _set_element(data: bytes, tag: tuple[int, int], value: str) -> bytes:
    """`data` (implicit VR little endian, as the dcmqi CT is) with the first element `tag`
    set to `value`, padded to the element's length so that nothing else moves."""
    key = struct.pack("<HH", *tag)
    start = data.index(key)
    length = struct.unpack_from("<I", data, start + 4)[0]
    encoded = value.encode("ascii").ljust(length)
    assert len(encoded) == length, (tag, value, length)
    return data[: start + 8] + encoded + data[start + 8 + length :]


def _ct_series(folder: Path, n: int) -> list[Path]:
    """The real 3-slice CT (1 mm apart) copied to `folder`, extended to `n` slices with
    copies of its last file moved 1 mm further each; the files in slice order."""
    folder.mkdir()
    files = [Path(shutil.copy(CT / f"{k:02d}.dcm", folder)) for k in (1, 2, 3)]
    last = (CT / "03.dcm").read_bytes()
    z_last = float(sitk.ReadImage(str(CT / "03.dcm")).GetOrigin()[2])  # -128.69 mm
    for k in range(4, n + 1):
        data = _set_element(last, (0x0020, 0x0032), f"-235.199997\\-226.800003\\"
                            f"{z_last - (k - 3):.6f}")  # fmt: skip
        data = _set_element(data, (0x0020, 0x0013), str(k))  # Instance Number
        uid = _set_element(last, (0x0008, 0x0018), "")  # the SOP instance UID's length
        data = _set_element(data, (0x0008, 0x0018), _unique_uid(last, k))
        assert uid != data
        files.append(folder / f"{k:02d}.dcm")
        files[-1].write_bytes(data)
    return files


def _unique_uid(data: bytes, k: int) -> str:
    """The file's SOP Instance UID with its last digits made unique for slice `k`."""
    start = data.index(struct.pack("<HH", 0x0008, 0x0018))
    length = struct.unpack_from("<I", data, start + 4)[0]
    uid = data[start + 8 : start + 8 + length].rstrip(b"\0 ").decode()
    return uid[: len(uid) - 3] + f"{900 + k:03d}"


@needs_ct
def test_uniform_real_series_reads_as_before(tmp_path) -> None:
    files = _ct_series(tmp_path / "ct", 6)
    src = open_image(tmp_path / "ct")
    assert src.shape == (6, 512, 512)
    np.testing.assert_allclose(src.spacing, (1.0, 0.810547, 0.810547), atol=1e-5)
    original = open_image(CT)
    assert original.shape == (3, 512, 512)
    np.testing.assert_allclose(original.spacing, (1.0, 0.810547, 0.810547), atol=1e-5)
    assert len(files) == 6


@needs_ct
def test_real_series_with_a_missing_slice_is_refused(tmp_path) -> None:
    files = _ct_series(tmp_path / "ct", 6)
    files[2].unlink()  # 03.dcm, instance 3 at -128.69 mm, between 02.dcm and 04.dcm
    # SimpleITK alone stacks the 5 slices 1.25 mm apart: a wrong, uniform spacing.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    assert reader.Execute().GetSpacing()[2] == pytest.approx(1.25)
    with pytest.raises(TileSAMError) as err:
        open_image(tmp_path / "ct")
    message = str(err.value)
    assert "has missing slices" in message and "1 mm apart" in message
    assert "1 slice(s) missing between" in message and "at -128.69 mm" in message
    assert "'02.dcm'" in message and "'04.dcm'" in message
    assert "(instance number 3)" in message
    assert "1.25 mm apart" in message  # what a reader without the check would do
    assert "Copy the missing file(s) into the folder" in message


@needs_ct
def test_real_series_with_two_gaps_names_both(tmp_path) -> None:
    files = _ct_series(tmp_path / "ct", 7)
    files[1].unlink()  # instance 2 at -127.69 mm
    files[4].unlink()  # instance 5 at -130.69 mm
    with pytest.raises(TileSAMError) as err:
        open_image(tmp_path / "ct")
    message = str(err.value)
    assert "at -127.69 mm (instance number 2)" in message
    assert "at -130.69 mm (instance number 5)" in message


@needs_ct
def test_labels_are_never_written_with_the_wrong_spacing(tmp_path) -> None:
    """The attack: labels of a series with a gap were written at its wrong uniform spacing."""
    files = _ct_series(tmp_path / "ct", 5)
    files[2].unlink()
    with pytest.raises(TileSAMError, match="missing slices"):
        src = open_image(tmp_path / "ct")
        write_labels(tmp_path / "labels.nii.gz", np.zeros(src.shape, np.uint8), like=src)
    assert not (tmp_path / "labels.nii.gz").exists()


@needs_ct
def test_real_series_with_unevenly_moved_slice_is_refused(tmp_path) -> None:
    """Not a whole slice missing: a position off by half a slice is refused as uneven."""
    files = _ct_series(tmp_path / "ct", 5)
    data = files[3].read_bytes()  # 04.dcm at -129.69 mm, moved to -129.19 mm
    files[3].write_bytes(_set_element(data, (0x0020, 0x0032), "-235.199997\\-226.800003\\"
                                      "-129.190002"))  # fmt: skip
    with pytest.raises(TileSAMError, match=r"not evenly spaced: the steps .* are .*0\.5"):
        open_image(tmp_path / "ct")


@needs_ct
def test_real_series_with_a_duplicate_position_is_refused(tmp_path) -> None:
    files = _ct_series(tmp_path / "ct", 4)
    data = files[3].read_bytes()  # 04.dcm moved onto 03.dcm's position
    files[3].write_bytes(_set_element(data, (0x0020, 0x0032), "-235.199997\\-226.800003\\"
                                      "-128.690002"))  # fmt: skip
    with pytest.raises(TileSAMError, match="slices at the same position.*'0[34].dcm'"):
        open_image(tmp_path / "ct")


@needs_ct
def test_real_three_slices_without_the_middle_one_warn(tmp_path) -> None:
    """Two slices left are evenly spaced by definition: the geometry read (2 mm) is right,
    so the series is read, with a warning naming the instance number it skips."""
    folder = tmp_path / "ct"
    folder.mkdir()
    for name in ("01.dcm", "03.dcm"):
        shutil.copy(CT / name, folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        src = open_image(folder)
    assert src.shape == (2, 512, 512)
    np.testing.assert_allclose(src.spacing[0], 2.0, atol=1e-5)
    messages = [str(w.message) for w in caught if "instance number" in str(w.message)]
    assert len(messages) == 1 and "skips instance number 2" in messages[0]
    assert caught[0].filename == __file__  # points at the caller, not at TileSAM


@needs_ct
def test_complete_real_series_reads_without_warning(tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        src = open_image(CT)
    assert src.shape == (3, 512, 512)
