"""Medical volumes: NIfTI / MHA / NRRD / DICOM read with their geometry, labels written back.

Real data (pyradiomics MRI, dcmqi CT) come from ../shared/data/medical when present; the
tests that need them skip otherwise. Orientation is checked on a NIfTI whose header bytes
are written here by hand (as another tool would), with a known RAS affine.
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import tilesam.io.write as write_module
from tilesam.errors import TileSAMError
from tilesam.io import MedicalSource, open_image, write_labels
from tilesam.io.medical import geometry_difference

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "medical"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real medical test data not found at {DATA}"
)


def _lps_point(src: MedicalSource, zyx: tuple[float, float, float]) -> np.ndarray:
    """The LPS point in mm of voxel ``(z, y, x)``, from the geometry `src` reports."""
    direction = np.reshape(src.direction, (3, 3))
    xyz_mm = np.multiply(src.spacing[::-1], zyx[::-1])
    return np.asarray(src.origin[::-1]) + direction @ xyz_mm


def _itk_volume(array: np.ndarray, spacing_zyx, origin_zyx, direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_zyx[::-1])
    image.SetOrigin(origin_zyx[::-1])
    if direction is not None:
        image.SetDirection(direction)
    return image


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".mhd", ".nrrd"])
def test_formats_open_as_zyx_with_geometry(tmp_path, suffix) -> None:
    vol = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(_itk_volume(vol, (3.0, 0.5, 0.7), (10.0, -20.0, 30.0)), str(path))
    src = open_image(path)
    assert isinstance(src, MedicalSource)
    assert (src.axes, src.shape, src.dtype) == ("ZYX", (4, 5, 6), np.dtype(np.int16))
    np.testing.assert_allclose(src.spacing, (3.0, 0.5, 0.7))
    np.testing.assert_allclose(src.origin, (10.0, -20.0, 30.0))
    np.testing.assert_array_equal(src.read(), vol)
    np.testing.assert_array_equal(src.read_slice(2, (slice(1, 3), slice(0, 6))), vol[2, 1:3])
    with pytest.raises(TileSAMError, match="axes come from the file"):
        open_image(path, axes="ZYX")


def _nifti_bytes(data_xyz: np.ndarray, srow: np.ndarray) -> bytes:
    """A NIfTI-1 file (int16) as another tool writes it: sform only, RAS+ affine `srow`."""
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *data_xyz.shape, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 4, 16)  # datatype int16, bitpix
    spacing = np.linalg.norm(srow[:, :3], axis=0)
    struct.pack_into("<8f", header, 76, 1.0, *spacing, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<f", header, 112, 1.0)  # scl_slope
    header[123] = 2  # xyzt_units: mm
    struct.pack_into("<hh", header, 252, 0, 1)  # qform_code 0, sform_code 1 (scanner)
    struct.pack_into("<12f", header, 280, *srow.reshape(-1))
    header[344:348] = b"n+1\0"
    return bytes(header) + data_xyz.astype("<i2").tobytes(order="F")  # x varies fastest


def _read_srow(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    return np.array(struct.unpack_from("<12f", raw, 280)).reshape(3, 4)


def test_nifti_from_another_tool_overlays_not_mirrored(tmp_path) -> None:
    # RAS affine: x runs to the patient's right (-x in RAS), y anterior, z superior, 2 mm.
    srow = np.array([[-0.8, 0, 0, 100.0], [0, 0.8, 0, -50.0], [0, 0, 2.0, 20.0]])
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)  # (x, y, z) as stored
    path = tmp_path / "other_tool.nii"
    path.write_bytes(_nifti_bytes(data, srow))
    src = open_image(path)
    assert src.shape == (4, 5, 6) and src.axis_aligned
    np.testing.assert_array_equal(src.read(), data.transpose(2, 1, 0))  # (z, y, x)
    for zyx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        ras = srow @ np.array([*zyx[::-1], 1.0])
        lps = ras * [-1, -1, 1]  # ITK's physical space is LPS
        np.testing.assert_allclose(_lps_point(src, zyx), lps, atol=1e-4)
    # Labels written like the source carry the same affine: they overlay, not mirrored.
    out = write_labels(tmp_path / "labels.nii", (src.read() > 50).astype(np.uint8), like=src)
    np.testing.assert_allclose(_read_srow(out), srow, atol=1e-4)
    back = open_image(out)
    assert geometry_difference(back, src) is None
    np.testing.assert_array_equal(back.read(), src.read() > 50)


def test_rotated_direction_is_kept_and_reported(tmp_path) -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    path = tmp_path / "rotated.nrrd"
    vol = np.ones((3, 8, 9), np.int16)
    sitk.WriteImage(_itk_volume(vol, (2.0, 1.0, 1.0), (0.0, 5.0, 7.0), direction), str(path))
    with pytest.warns(UserWarning, match="not axis-aligned.*napari shows it axis-aligned"):
        src = open_image(path)
    assert not src.axis_aligned
    np.testing.assert_allclose(src.direction, direction, atol=1e-6)
    out = write_labels(tmp_path / "labels.nii.gz", np.ones((3, 8, 9), np.uint8), like=src)
    written = sitk.ReadImage(str(out))
    np.testing.assert_allclose(written.GetDirection(), direction, atol=1e-5)
    np.testing.assert_allclose(written.GetOrigin(), (7.0, 5.0, 0.0), atol=1e-5)


def test_four_d_file_is_refused(tmp_path) -> None:
    path = tmp_path / "fmri.nii.gz"
    series = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16), isVector=False)
    sitk.WriteImage(series, str(path))  # a time series, as fMRI tools write it
    with pytest.raises(TileSAMError, match="4D image.*Extract one time point"):
        open_image(path)


def test_corrupt_file_is_a_user_error(tmp_path) -> None:
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"not a nifti at all")
    with pytest.raises(TileSAMError, match="SimpleITK cannot read .*broken.nii.gz"):
        open_image(path)


def _write_dicom_series(folder: Path, uid: str, description: str, n: int = 3) -> None:
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(n):
        image = sitk.GetImageFromArray(np.full((1, 16, 16), 10 * k, np.int16))
        image.SetSpacing((0.5, 0.5, 2.5))  # the writer takes the pixel spacing from here
        for tag, value in {
            "0020|000e": uid,  # Series Instance UID
            "0008|103e": description,
            "0008|0018": f"{uid}.{k + 1}",  # SOP Instance UID
            "0020|0013": str(k + 1),  # Instance Number
            "0020|0032": f"0\\0\\{2.5 * k}",  # Image Position (Patient)
            "0020|0037": "1\\0\\0\\0\\1\\0",
        }.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid[-1]}_{k}.dcm"))
        writer.Execute(image)


def test_dicom_folder_with_several_series_asks_which(tmp_path) -> None:
    folder = tmp_path / "study"
    _write_dicom_series(folder, "1.2.826.0.1.3680043.2.1125.1", "ct arterial")
    _write_dicom_series(folder, "1.2.826.0.1.3680043.2.1125.2", "ct venous", n=4)
    with pytest.raises(TileSAMError, match="several DICOM series.*ct arterial.*ct venous.*series="):
        open_image(folder)
    second = open_image(folder, series=1)
    assert second.shape == (4, 16, 16)
    np.testing.assert_allclose(second.spacing, (2.5, 0.5, 0.5))
    by_uid = open_image(folder, series="1.2.826.0.1.3680043.2.1125.1")
    assert by_uid.shape == (3, 16, 16)
    np.testing.assert_array_equal(by_uid.read()[:, 0, 0], [0, 10, 20])
    with pytest.raises(TileSAMError, match="no DICOM series '9.9'"):
        open_image(folder, series="9.9")


@needs_data
def test_real_dicom_ct_and_its_masks_share_a_grid() -> None:
    ct = open_image(DATA / "dcmqi_ct3slice" / "ct")
    liver = open_image(DATA / "dcmqi_ct3slice" / "seg" / "liver_seg.nrrd")
    assert ct.shape == (3, 512, 512) and ct.dtype.kind == "i"
    assert ct.read().min() < -900  # Hounsfield units (air), the rescale is applied
    np.testing.assert_allclose(ct.spacing[1:], (0.810547, 0.810547), atol=1e-6)
    assert geometry_difference(ct, liver) is None and liver.read().max() == 1


@needs_data
def test_real_mri_written_back_with_its_flipped_direction(tmp_path) -> None:
    src = open_image(DATA / "pyradiomics_brain1_image.nrrd")
    truth = sitk.ReadImage(str(DATA / "pyradiomics_brain1_image.nrrd"))
    assert src.shape == (25, 256, 256)
    assert src.direction == truth.GetDirection() and src.direction[4] == -1.0  # y flipped
    np.testing.assert_allclose(src.origin, truth.GetOrigin()[::-1])
    mask = open_image(DATA / "pyradiomics_brain1_label.nrrd").read()
    for name in ("labels.nii.gz", "labels.nrrd", "labels.mha"):
        out = write_labels(tmp_path / name, mask, like=src)
        back = open_image(out)
        assert geometry_difference(back, src) is None, name
        np.testing.assert_array_equal(back.read(), mask)
        assert back.dtype == np.uint8  # the smallest type that holds the ids
        # Same physical point for the same voxel: the labels overlay the image.
        written = sitk.ReadImage(str(out))
        np.testing.assert_allclose(written.TransformIndexToPhysicalPoint((30, 100, 7)),
                                   truth.TransformIndexToPhysicalPoint((30, 100, 7)))  # fmt: skip


def test_write_labels_checks_and_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    src = open_image(np.zeros((3, 10, 12), np.int16))
    with pytest.raises(TileSAMError, match="do not fit"):
        write_labels(tmp_path / "a.nii.gz", np.zeros((3, 10, 11), np.uint8), like=src)
    with pytest.raises(TileSAMError, match="Cannot write labels to 'a.png'"):
        write_labels(tmp_path / "a.png", np.zeros((3, 10, 12), np.uint8), like=src)
    with pytest.raises(TileSAMError, match="does not exist"):
        write_labels(tmp_path / "missing" / "a.nrrd", np.zeros((3, 10, 12), np.uint8))
    huge = np.zeros((3, 10, 12), np.int64)
    huge[1, 2:4, 2:4] = 2**32 + 7  # would wrap round to 7 in uint32
    with pytest.raises(TileSAMError, match=r"id above 2\*\*32 - 1 \(4294967303\)"):
        write_labels(tmp_path / "a.nrrd", huge, like=src)

    def fail(path, *args):
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write_module, "write_medical", fail)
    # The disk's error becomes one TileSAMError naming the file and what to do (io.atomic).
    with pytest.raises(TileSAMError, match=r"Could not write '.*b\.nii\.gz': No space left"):
        write_labels(tmp_path / "b.nii.gz", np.zeros((3, 10, 12), np.uint8), like=src)
    assert list(tmp_path.iterdir()) == []


def test_tiff_labels_keep_the_pixel_size(tmp_path) -> None:
    src = open_image(np.zeros((3, 10, 12), np.uint16))
    labels = np.zeros((3, 10, 12), np.uint32)
    labels[1, 2:5, 3:6] = 70_000
    out = write_labels(tmp_path / "labels.tif", labels, spacing=(2.0, 0.5, 0.5))
    back = open_image(out)
    assert back.dtype == np.uint32 and back.spacing == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(back.read(), labels)
    assert src.spacing == (1.0, 1.0, 1.0)
