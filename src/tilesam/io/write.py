"""`write_labels`: a labels volume or image to disk, with its source's geometry, atomically.

Geometry means spacing and origin (OME-TIFF, OME-Zarr), the direction too (NIfTI, NRRD,
MHA), or the CRS and transform (GeoTIFF, for a georeferenced source).

The file is written under a temporary name in the target folder and renamed into place
only when complete, so a failure (or an interrupted run) never leaves a partial file that
looks finished. Labels are stored as the smallest unsigned type that holds their ids.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.geo import GeoReference, write_geotiff
from tilesam.io.medical import WRITABLE_SUFFIXES, MedicalSource, medical_suffix, write_medical
from tilesam.io.source import ImageSource

_TIFF_SUFFIXES = (".tif", ".tiff")


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
        ``.nii`` / ``.nii.gz`` / ``.mha`` / ``.nrrd`` (spacing, origin and direction kept) or
        ``.tif`` (OME-TIFF with the physical pixel size, or GeoTIFF for a georeferenced
        image).
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
    >>> src = open_image("ct.nii.gz")  # doctest: +SKIP
    >>> write_labels("liver.nii.gz", labels, like=src)  # doctest: +SKIP
    """
    path = check_labels_path(path)
    suffix = medical_suffix(path) or path.suffix.lower()
    labels = _checked_labels(labels, like)
    if like is not None:
        spacing, origin, georeference = like.spacing, like.origin, like.georeference
    # Same folder (so the rename is atomic), same ending (writers choose the format by it).
    partial = path.with_name(f".{uuid.uuid4().hex[:8]}.partial-{path.name}")
    try:
        if suffix in _TIFF_SUFFIXES and georeference is not None:
            write_geotiff(partial, labels, georeference)
        elif suffix in _TIFF_SUFFIXES:
            _write_tiff(partial, labels, spacing)
        else:
            medical = like if isinstance(like, MedicalSource) else None
            write_medical(partial, labels, medical, spacing, origin)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def check_labels_path(path: str | os.PathLike[str]) -> Path:
    """`path` if labels can be written there (known ending, existing folder), else raise.

    Check before long work, so that it does not end in an error.

    >>> check_labels_path("out/labels.zip")  # doctest: +SKIP
    Traceback (most recent call last):
    tilesam.errors.TileSAMError: Cannot write labels to 'labels.zip': use one of .nii, ...
    """
    path = Path(path).expanduser()
    suffix = medical_suffix(path) or path.suffix.lower()
    if suffix not in (*WRITABLE_SUFFIXES, *_TIFF_SUFFIXES):
        raise TileSAMError(
            f"Cannot write labels to '{path.name}': use one of "
            f"{', '.join((*WRITABLE_SUFFIXES, *_TIFF_SUFFIXES))}."
        )
    if not path.parent.is_dir():
        raise TileSAMError(f"The folder '{path.parent}' does not exist; create it first.")
    return path


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
