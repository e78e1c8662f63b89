"""Medical volumes on SimpleITK: NIfTI, MHA/MHD, NRRD and DICOM series, read and written.

ITK describes a volume in physical LPS space by its spacing, origin and a direction matrix
(the cosines of the index axes); SimpleITK converts NIfTI's RAS header (qform / sform) to
that itself, so a file written by any tool keeps its orientation. :class:`MedicalSource`
presents the voxels as ``ZYX`` (numpy order) with ``spacing`` and ``origin`` also in
``(z, y, x)`` order, and keeps the direction as ITK gives it. :func:`write_medical`
writes labels with exactly a source's geometry, so they overlay it in 3D Slicer, ITK-SNAP
and napari.

The voxel index ``(z, y, x)`` lies at the LPS point
``origin_xyz + direction @ (spacing_xyz * (x, y, z))``.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.array_source import LayoutSource
from tilesam.io.medical_checks import check_nifti_voxel_size, check_slice_positions

if TYPE_CHECKING:
    import SimpleITK as sitk

#: File endings SimpleITK reads for us (a DICOM series is a folder).
MEDICAL_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm")
#: Single-file formats labels can be written to (a .mhd/.nhdr pair cannot be renamed into
#: place atomically, and DICOM-SEG is a format of its own).
WRITABLE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".nrrd")
_TOLERANCE = 1e-4  # geometry equal within this (relative) tolerance


def _sitk() -> ModuleType:
    """SimpleITK, imported on first use: with this module it would add about 0.3 s to
    opening any image, TIFF and zarr included."""
    import SimpleITK

    return SimpleITK


def medical_suffix(path: str | os.PathLike[str]) -> str:
    """The medical file ending of `path` (``".nii.gz"`` counts as one), or ``""``.

    >>> medical_suffix("ct.NII.GZ"), medical_suffix("x.tif")
    ('.nii.gz', '')
    """
    name = Path(path).name.lower()
    return next(
        (s for s in sorted(MEDICAL_SUFFIXES, key=len, reverse=True) if name.endswith(s)), ""
    )


def dicom_series(folder: str | os.PathLike[str]) -> list[str]:
    """The DICOM series UIDs found directly in `folder` (empty for a folder without DICOM)."""
    return list(_sitk().ImageSeriesReader.GetGDCMSeriesIDs(os.fspath(folder)) or ())


class MedicalSource(LayoutSource):
    """A NIfTI / MHA / MHD / NRRD file or a DICOM series folder, with its physical geometry.

    The volume is read into memory once (SimpleITK has no region reads for these formats);
    slices are then served from it without copies of the whole volume.

    Parameters
    ----------
    path : str or Path
        The file, or a folder holding a DICOM series.
    series : str or int, optional
        Which DICOM series of a folder holding several: its UID or its position in the
        list the error message shows.

    Attributes
    ----------
    direction : tuple of float
        ITK's direction matrix, row-major, over ``(x, y, z)`` in LPS (9 numbers; 4 for 2D).
    axis_aligned : bool
        Whether every index axis runs along a physical axis (possibly flipped or swapped).
        Otherwise napari displays the volume axis-aligned (rotation ignored); the labels are
        still written back with the original direction, so they overlay in 3D viewers.

    Examples
    --------
    >>> from tilesam.samples import sample_path
    >>> src = MedicalSource(sample_path("ct_volume"))  # a NIfTI file
    >>> src.axes, src.shape, src.dtype.name
    ('ZYX', (40, 160, 160), 'int16')
    >>> [round(v, 3) for v in src.spacing], src.origin  # (z, y, x) in mm
    ([2.5, 0.8, 0.8], (-50.0, -64.0, -64.0))
    >>> src.direction, src.axis_aligned
    ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), True)
    """

    def __init__(self, path: str | os.PathLike[str], *, series: str | int | None = None) -> None:
        self.path = Path(path)
        image = _read(self.path, series)
        dim, components = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
        if dim > 3:
            raise TileSAMError(
                f"'{self.path}' is a {dim}D image of size {image.GetSize()}: TileSAM segments 2D "
                "images and 3D volumes. Extract one time point or channel first (e.g. with "
                "SimpleITK's Extract or fslroi)."
            )
        self._image = image  # owns the memory the array view below points into
        array = _sitk().GetArrayViewFromImage(image)
        native = ("ZYX" if dim == 3 else "YX") + ("C" if components > 1 else "")
        self._init_layout(
            array,
            native,
            f"'{self.path}'",
            spacing=image.GetSpacing()[::-1],
            origin=image.GetOrigin()[::-1],
        )
        self.direction: tuple[float, ...] = tuple(float(v) for v in image.GetDirection())
        self.axis_aligned = _is_axis_aligned(self.direction, dim)
        if not self.axis_aligned:
            warnings.warn(
                f"'{self.path.name}' is not axis-aligned (direction {self.direction}): napari "
                "shows it axis-aligned, with the rotation ignored. Labels written with "
                "write_labels(..., like=source) keep the rotation and overlay in 3D viewers.",
                stacklevel=2,
            )

    def describe(self) -> str:
        return f"'{self.path}' ({self._axes} {self._shape} {self._dtype})"

    def close(self) -> None:
        """Release the volume's memory."""
        self._array = None
        self._image = None


def geometry_difference(a: MedicalSource, b: MedicalSource) -> str | None:
    """What differs between the grids of `a` and `b` (``"spacing (...) against (...)"``),
    or None when they are the same within rounding.

    Each field has its own tolerance: the origin's scales with its distance from zero (a
    thousandth of a millimetre at 10 mm), spacing is compared relatively and the direction
    cosines absolutely, so that a grid 0.02 mm coarser or turned by a degree differs.
    """
    if a.spatial_shape != b.spatial_shape:
        return f"shape {a.spatial_shape} against {b.spatial_shape}"
    scale = max(1.0, *(abs(v) for v in a.origin))
    checks = (
        ("spacing", a.spacing, b.spacing, {"rtol": _TOLERANCE, "atol": 0.0}),
        ("origin", a.origin, b.origin, {"rtol": 0.0, "atol": _TOLERANCE * scale}),
        ("direction", a.direction, b.direction, {"rtol": 0.0, "atol": _TOLERANCE}),
    )
    for name, x, y, tolerance in checks:
        if not np.allclose(x, y, **tolerance):
            return f"{name} {_rounded(x)} against {_rounded(y)}"
    return None


def _rounded(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)


def write_medical(
    path: Path,
    labels: np.ndarray,
    like: MedicalSource | None,
    spacing: Sequence[float] | None,
    origin: Sequence[float] | None,
) -> None:
    """Write `labels` ``(z, y, x)`` to `path` with `like`'s geometry (or spacing / origin).

    Called by :func:`tilesam.io.write_labels`, which checks shapes and renames into place.
    """
    image = _sitk().GetImageFromArray(labels)
    if like is not None:
        image.SetSpacing(like.spacing[::-1])
        image.SetOrigin(like.origin[::-1])
        image.SetDirection(like.direction)
    else:
        if spacing is not None:
            image.SetSpacing([float(v) for v in spacing][::-1])
        if origin is not None:
            image.SetOrigin([float(v) for v in origin][::-1])
    _sitk().WriteImage(image, os.fspath(path), useCompression=True)
    # SimpleITK reports success for a file a full disk cut short: read it back, so that a
    # damaged file never replaces a good one (the caller's atomic path keeps the old one).
    try:
        written = _sitk().ReadImage(os.fspath(path))
    except RuntimeError as err:
        raise OSError(errno.EIO, f"the written file does not read back ({err})") from err
    if written.GetSize() != image.GetSize():
        raise OSError(errno.EIO, "the written file does not read back whole")


def _read(path: Path, series: str | int | None) -> sitk.Image:
    try:
        if path.is_dir():
            return _read_dicom_folder(path, series)
        if series is not None:
            raise TileSAMError(f"series= selects a DICOM series in a folder; '{path}' is a file.")
        if medical_suffix(path) in (".nii", ".nii.gz"):
            check_nifti_voxel_size(path)
        return _sitk().ReadImage(os.fspath(path))
    except RuntimeError as exc:  # SimpleITK reports every reader failure as RuntimeError
        raise TileSAMError(
            f"SimpleITK cannot read '{path}': {str(exc).strip().splitlines()[-1]}. Check that "
            "the file is complete (copy or export it again) and is NIfTI, MHA/MHD, NRRD or DICOM."
        ) from exc


def _read_dicom_folder(folder: Path, series: str | int | None) -> sitk.Image:
    uids = dicom_series(folder)
    if not uids:
        raise TileSAMError(
            f"'{folder}' holds no DICOM series. Pass a folder of DICOM slices, or a NIfTI, "
            "MHA, NRRD or TIFF file."
        )
    uid = _choose_series(folder, uids, series)
    files = _sitk().ImageSeriesReader.GetGDCMSeriesFileNames(os.fspath(folder), uid)
    reader = _sitk().ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()  # each slice's tags, for the position check
    image = reader.Execute()
    check_slice_positions(folder, files, reader, image)
    return image


def _choose_series(folder: Path, uids: list[str], series: str | int | None) -> str:
    if series is None and len(uids) == 1:
        return uids[0]
    if isinstance(series, int) and 0 <= series < len(uids):
        return uids[series]
    if isinstance(series, str) and series in uids:
        return series
    listing = "; ".join(
        f"{i}: {uid} ({_series_summary(folder, uid)})" for i, uid in enumerate(uids)
    )
    what = "several DICOM series" if series is None else f"no DICOM series {series!r}"
    raise TileSAMError(
        f"'{folder}' holds {what}: {listing}. Choose one with series=<number or UID> "
        "(command line: --series), or put each series in its own folder."
    )


def _series_summary(folder: Path, uid: str) -> str:
    """``"<n> files, <SeriesDescription>"`` for the error that lists a folder's series."""
    files = _sitk().ImageSeriesReader.GetGDCMSeriesFileNames(os.fspath(folder), uid)
    reader = _sitk().ImageFileReader()
    reader.SetFileName(files[0])
    reader.ReadImageInformation()
    key = "0008|103e"  # Series Description
    text = reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else "no description"
    return f"{len(files)} file(s), {text}"


def _is_axis_aligned(direction: Sequence[float], dim: int) -> bool:
    matrix = np.abs(np.asarray(direction, dtype=np.float64).reshape(dim, dim))
    # A signed permutation: one entry of magnitude 1 in every row, the rest 0.
    return bool(np.allclose(np.sort(matrix, axis=1)[:, :-1], 0.0, atol=1e-6))


# -- NIfTI voxel sizes ---------------------------------------------------------------------
