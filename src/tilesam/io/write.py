"""`write_labels`: a labels volume or image to disk, with its source's geometry, atomically.

Geometry means spacing and origin (OME-TIFF: spacing only; OME-Zarr), the direction too
(NIfTI, NRRD, MHA), or the CRS and transform (GeoTIFF, for a georeferenced source).

The file is written under a temporary name in the target folder and renamed into place
only when complete (`tilesam.io.atomic.atomic_output`), so a failure (or an interrupted
run) never leaves a partial file that looks finished, nor destroys the file it was to
replace. Labels are stored as the smallest unsigned type that holds their ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.atomic import atomic_output
from tilesam.io.geo import GeoReference, write_geotiff
from tilesam.io.medical import WRITABLE_SUFFIXES, MedicalSource, medical_suffix, write_medical
from tilesam.io.ome_zarr import OME_ZARR_SUFFIX, holds_ome_image, is_ome_zarr, write_ome_zarr
from tilesam.io.source import ImageSource

_TIFF_SUFFIXES = (".tif", ".tiff")
LABEL_SUFFIXES = (*WRITABLE_SUFFIXES, *_TIFF_SUFFIXES, OME_ZARR_SUFFIX)


def write_labels(
    path: str | os.PathLike[str],
    labels: np.ndarray,
    like: ImageSource | None = None,
    *,
    spacing: Any = None,
    origin: Any = None,
    georeference: GeoReference | None = None,
) -> Path:
    """Write integer labels ``(z, y, x)`` or ``(y, x)`` so that they overlay `like`.

    Parameters
    ----------
    path : str or Path
        ``.nii`` / ``.nii.gz`` / ``.mha`` / ``.nrrd`` (spacing, origin and direction kept),
        ``.ome.zarr`` (an OME-Zarr 0.5 folder: spacing and origin) or ``.tif`` (OME-TIFF
        with the physical pixel size, or GeoTIFF for a georeferenced image). An existing
        file (or OME-Zarr) there is replaced once the new one is complete.
    labels : numpy.ndarray
        Non-negative integer ids, 0 = background; the shape of `like`'s spatial axes.
    like : ImageSource, optional
        The image the labels belong to; its geometry is written with them. For a
        :class:`MedicalSource` that includes the direction matrix.
    spacing, origin : sequence of float, optional
        Geometry in ``(z,) y, x`` order when there is no `like`.
    georeference : GeoReference, optional
        CRS and transform when there is no `like` (a ``.tif`` is then a GeoTIFF).

    Examples
    --------
    >>> import tempfile
    >>> from tilesam.io import open_image
    >>> from tilesam.samples import load_sample, sample_path
    >>> ct = open_image(sample_path("ct_volume"))
    >>> _, organs = load_sample("ct_volume")
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("organs.nii.gz", "organs.ome.zarr"):
    ...     back = open_image(write_labels(folder / name, organs, like=ct))
    ...     print(name, back.spatial_shape, back.spacing == ct.spacing, back.origin == ct.origin)
    organs.nii.gz (40, 160, 160) True True
    organs.ome.zarr (40, 160, 160) True True
    """
    path = check_labels_path(path)
    labels = _checked_labels(labels, like)
    if like is not None:
        spacing, origin, georeference = like.spacing, like.origin, like.georeference
    medical = like if isinstance(like, MedicalSource) else None
    with atomic_output(path) as partial:
        _write(partial, _suffix(path), labels, medical, spacing, origin, georeference)
    return path


def _write(
    partial: Path,
    suffix: str,
    labels: np.ndarray,
    medical: MedicalSource | None,
    spacing: Any,
    origin: Any,
    georeference: GeoReference | None,
) -> None:
    if suffix == OME_ZARR_SUFFIX:
        write_ome_zarr(partial, labels, spacing=spacing, origin=origin)
    elif suffix in _TIFF_SUFFIXES and georeference is not None:
        write_geotiff(partial, labels, georeference)
    elif suffix in _TIFF_SUFFIXES:
        _write_tiff(partial, labels, spacing)
    else:
        write_medical(partial, labels, medical, spacing, origin)


def check_labels_path(path: str | os.PathLike[str]) -> Path:
    """`path` if labels can be written there (known ending, existing folder), else raise.

    Check before long work, so that it does not end in an error.

    >>> check_labels_path("labels.zip")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: Cannot write labels to 'labels.zip': use one of .nii, ...
    """
    path = Path(path).expanduser()
    if _suffix(path) not in LABEL_SUFFIXES:
        raise TileSAMError(
            f"Cannot write labels to '{path.name}': use one of {', '.join(LABEL_SUFFIXES)}."
        )
    check_target(path, "labels")
    return path


def check_target(path: Path, what: str) -> None:
    """Raise unless `path`'s folder exists and `path` is not a folder TileSAM must not replace.

    An existing OME-Zarr image is replaced by a new one; any other folder (an embedding
    cache, a folder of images) is refused rather than deleted.
    """
    if not path.parent.is_dir():
        raise TileSAMError(f"The folder '{path.parent}' does not exist; create it first.")
    if path.is_dir() and not (is_ome_zarr(path) and holds_ome_image(path)):
        raise TileSAMError(
            f"'{path}' is a folder that is not an OME-Zarr image: TileSAM does not replace it "
            f"with the {what}. Choose another name."
        )


def _suffix(path: Path) -> str:
    """The ending that picks the format: ``.nii.gz`` and ``.ome.zarr`` count as one."""
    if is_ome_zarr(path):
        return OME_ZARR_SUFFIX
    return medical_suffix(path) or path.suffix.lower()


def _checked_labels(labels: np.ndarray, like: ImageSource | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "uib" or labels.ndim not in (2, 3):
        raise TileSAMError(
            f"Labels must be a 2D or 3D integer array, got {labels.ndim}D {labels.dtype}."
        )
    if like is not None and labels.shape != like.spatial_shape:
        raise TileSAMError(
            f"Labels of shape {labels.shape} do not fit {like.describe()}, whose voxels are "
            f"{like.spatial_shape}: write labels made for this image."
        )
    if labels.size and labels.min() < 0:
        raise TileSAMError("Labels must be >= 0 (0 is background).")
    top = int(labels.max()) if labels.size else 0
    if top >= 2**32:
        raise TileSAMError(
            f"Labels hold an id above 2**32 - 1 ({top}), which label files here cannot hold "
            "(uint32 at most): relabel the objects 1, 2, 3... (e.g. "
            "skimage.segmentation.relabel_sequential) before writing."
        )
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    return labels.astype(dtype, copy=False)


def _write_tiff(path: Path, labels: np.ndarray, spacing) -> None:
    import tifffile

    axes = "ZYX"[-labels.ndim :]
    metadata: dict[str, Any] = {"axes": axes}
    if spacing is not None:
        names = ("PhysicalSizeZ", "PhysicalSizeY", "PhysicalSizeX")[-labels.ndim :]
        metadata.update({n: float(v) for n, v in zip(names, spacing)})
    tifffile.imwrite(path, labels, ome=True, metadata=metadata, compression="zlib")
