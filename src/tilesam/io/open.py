"""`open_image`: one entry point that picks the reader for a path or an array."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tifffile
import zarr

from tilesam.errors import TileSAMError
from tilesam.io.array_source import ArraySource
from tilesam.io.medical import MedicalSource, dicom_series, medical_suffix
from tilesam.io.picture import PICTURE_SUFFIXES, read_picture
from tilesam.io.raster import RasterSource
from tilesam.io.source import ImageSource
from tilesam.io.tiff import TiffSource
from tilesam.io.video import (
    VIDEO_SUFFIXES,
    VideoSource,
    frames_source,
    is_frame_list,
    picture_folder_source,
)
from tilesam.io.zarr_source import ZarrSource

_TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
# Rasters GDAL reads (GeoTIFFs are found by their geokeys): JPEG 2000, VRT mosaics, ERDAS
# Imagine, GeoPackage rasters, NITF, ENVI / ESRI band files.
_RASTER_SUFFIXES = (".jp2", ".j2k", ".vrt", ".img", ".gpkg", ".ntf", ".hdr", ".bil")
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
_SUPPORTED = (
    "TIFF / OME-TIFF files (.tif, .tiff, .ome.tif, .btf), PNG / JPEG / BMP pictures, "
    "zarr / OME-Zarr folders, georeferenced rasters GDAL reads (GeoTIFF, COG, JPEG 2000, "
    "VRT, .img, GeoPackage), "
    "medical volumes (.nii, .nii.gz, .mha, .mhd, .nrrd, DICOM series folders), "
    "videos (.mp4, .avi, .mov, .mkv, .webm), folders of PNG / JPEG frames, "
    "and numpy or dask arrays (or lists of equally sized frames)"
)


def open_image(
    path_or_array: str | os.PathLike[str] | ImageSource | Any,
    *,
    axes: str | None = None,
    level: int = 0,
    series: str | int | None = None,
    **raster: Any,
) -> ImageSource:
    """Open an image lazily, choosing the reader from the type, extension or folder content.

    Parameters
    ----------
    path_or_array : str, Path, ImageSource, array-like
        A TIFF/OME-TIFF file, a zarr/OME-Zarr folder, a zarr array or group, a numpy or
        dask array, or an `ImageSource` (returned unchanged). Time series: a video file
        (:class:`tilesam.io.video.VideoSource`), a folder of PNG / JPEG frames, or a list
        of equally sized frames; their frames are the slice axis Z.
    axes : str, optional
        Stored axis order to override the reader's (letters ``Z``, ``Y``, ``X``, ``C``, and
        ``T`` for time, which becomes the slice axis: see :func:`tilesam.io.axes.map_time`).
    level : int
        Pyramid level for multiscale files, 0 = full resolution.
    series : str or int, optional
        The DICOM series (UID or number) of a folder holding several.
    **raster
        ``bands``, ``nodata``, ``crs``, ``resolution`` of a raster GDAL reads (see
        :class:`tilesam.io.raster.RasterSource`); a file given them is read by GDAL.

    Returns
    -------
    ImageSource

    Raises
    ------
    TileSAMError
        Missing path, unsupported extension, unreadable or truncated file, a video ffmpeg
        cannot decode, frames of different sizes.

    Examples
    --------
    >>> import numpy as np
    >>> open_image(np.zeros((32, 48, 3), np.uint8)).axes
    'YXC'
    """
    raster = _raster_options(raster)
    if isinstance(path_or_array, ImageSource):
        return path_or_array
    if raster and not isinstance(path_or_array, str | os.PathLike):
        raise TileSAMError(
            f"{', '.join(raster)} apply to raster files GDAL reads; select the bands of an "
            "array yourself (e.g. array[..., [3, 2, 1]])."
        )
    if isinstance(path_or_array, zarr.Array | zarr.Group):
        return ZarrSource(path_or_array, axes=axes, level=level)
    if not isinstance(path_or_array, str | os.PathLike):
        if level != 0:
            raise TileSAMError(f"An in-memory array has a single level; got level={level}.")
        if is_frame_list(path_or_array):
            return frames_source(path_or_array, axes=axes)
        return ArraySource(path_or_array, axes=axes)
    path = Path(path_or_array).expanduser()
    if not path.exists():
        raise TileSAMError(
            f"No such file or folder: '{path}' (current folder: '{Path.cwd()}'). "
            "Check the path and spelling."
        )
    medical = path.is_dir() and not _is_zarr(path) and dicom_series(path)
    if medical or medical_suffix(path):
        if axes is not None or level != 0 or raster:
            raise TileSAMError(
                f"'{path.name}' is a medical volume: its axes come from the file (ZYX) and it "
                "has one level and no bands; leave axes=, level= and the raster options out."
            )
        return MedicalSource(path, series=series)
    if path.is_dir():
        if _is_zarr(path) and raster:
            raise TileSAMError(f"{', '.join(raster)} apply to raster files GDAL reads, not zarr.")
        if _is_zarr(path):
            return ZarrSource(path, axes=axes, level=level)
        frames = None if raster or level else picture_folder_source(path, axes=axes)
        if frames is not None:
            return frames
        raise TileSAMError(
            f"'{path}' is a folder but not a zarr store (it has no zarr.json, .zgroup or "
            f".zarray). TileSAM opens {_SUPPORTED}; pass the image file inside it, or load "
            "the images yourself and pass an array."
        )
    if series is not None:
        raise TileSAMError("series= selects a DICOM series; this file is not a DICOM folder.")
    if raster or _is_raster(path):
        if axes is not None:
            raise TileSAMError(f"'{path.name}' is read by GDAL, band by band: leave axes= out.")
        return RasterSource(path, level=level, **raster)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        if axes is not None or level != 0:
            raise TileSAMError(
                f"'{path.name}' is a video: its axes are frames (Z, time), Y, X and RGB; it "
                "has one level. Leave axes= and level= out."
            )
        return VideoSource(path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return TiffSource(path, axes=axes, level=level)
    if path.suffix.lower() in PICTURE_SUFFIXES:
        return ArraySource(read_picture(path), axes=axes)
    raise TileSAMError(
        f"Cannot open '{path}': unsupported file type '{path.suffix or '(none)'}'. TileSAM "
        f"opens {_SUPPORTED}. Convert the file (e.g. to OME-TIFF or OME-Zarr with "
        "bioformats2raw), or load it yourself and pass the array."
    )


def _raster_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - {"bands", "nodata", "crs", "resolution"}
    if unknown:
        raise TypeError(f"open_image() got unexpected keyword(s) {sorted(unknown)}")
    return {k: v for k, v in options.items() if v is not None}


def _is_raster(path: Path) -> bool:
    """Whether GDAL should read `path`: a raster format of its own, or a GeoTIFF."""
    suffix = path.suffix.lower()
    if suffix in _RASTER_SUFFIXES:
        return True
    if suffix not in _TIFF_SUFFIXES:
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_geotiff)
    except Exception:  # noqa: BLE001 - not a readable TIFF: TiffSource says why
        return False


def _is_zarr(path: Path) -> bool:
    return any((path / m).exists() for m in _ZARR_MARKERS)
