"""Medical files whose geometry would be read wrong are refused before they are used.

SimpleITK reads a NIfTI whose voxel size is 0, negative or NaN as 1.0 (or flips the axis),
and a DICOM series with a missing, doubled or unevenly placed slice at one uniform, wrong
spacing: labels written from it would not overlay the scan. These checks read the NIfTI
header and each DICOM slice's position along the slice normal, and say which axis or which
slice is wrong and what to do (:mod:`tilesam.io.medical` calls them).
"""

from __future__ import annotations

import gzip
import math
import struct
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tilesam.errors import TileSAMError

if TYPE_CHECKING:
    import SimpleITK as sitk

#: Slices of a DICOM series are evenly spaced when every step between neighbours is within
#: this fraction of a step of the others (scanners write positions with some jitter).
_SLICE_TOLERANCE = 0.1
_SHOWN = 5  # gaps / slices named in an error message


def _nifti_header(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]] | None:
    """``dim`` and ``pixdim`` of a NIfTI-1 or NIfTI-2 header, as stored; None when the file
    does not start with one (SimpleITK then says what is wrong)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    for order in "<>":
        size = struct.unpack_from(order + "i", raw)[0] if len(raw) >= 4 else 0
        if size == 348 and len(raw) >= 348:
            dims = struct.unpack_from(order + "8h", raw, 40)
            pixdim = struct.unpack_from(order + "8f", raw, 76)
        elif size == 540 and len(raw) >= 540:
            dims = struct.unpack_from(order + "8q", raw, 16)
            pixdim = struct.unpack_from(order + "8d", raw, 104)
        else:
            continue
        return (dims, pixdim) if 1 <= dims[0] <= 7 else None
    return None


def check_nifti_voxel_size(path: Path) -> None:
    """Refuse a NIfTI whose voxel size (``pixdim``) is zero, negative or not a number along
    an axis of more than one voxel.

    SimpleITK reads such a size without a word: 0 and NaN as 1.0, -2 as 2.0 with the axis
    flipped; distances, volumes and the labels written with that geometry would be wrong.
    """
    header = _nifti_header(path)
    if header is None:
        return
    dims, pixdim = header
    bad = [
        f"pixdim[{i}] = {float(pixdim[i]):g} (the voxel size along {'xyz'[i - 1]}, an axis of "
        f"{dims[i]} voxels)"
        for i in range(1, min(dims[0], 3) + 1)
        if dims[i] > 1 and not (math.isfinite(pixdim[i]) and pixdim[i] > 0)
    ]
    if bad:
        raise TileSAMError(
            f"'{path}' has an invalid voxel size in its NIfTI header: {'; '.join(bad)}. A voxel "
            "size must be a positive number of millimetres; read as it is (SimpleITK takes 0 "
            "for 1.0 and -2 for 2.0 with the axis flipped) every distance and every label "
            "written with this geometry would be wrong. Write the true voxel size into the "
            "header (e.g. nibabel: img.header.set_zooms((x, y, z)), or fslmodhd), or export "
            "the volume again from the tool that made it, then open it again."
        )


# -- DICOM slice positions -----------------------------------------------------------------


def _slice_positions(reader: sitk.ImageSeriesReader, n: int) -> np.ndarray | None:
    """Each slice's position (mm) along the slice normal, in the order read, from Image
    Position and Orientation (Patient); None when the files do not say."""
    try:
        orientation = [float(v) for v in reader.GetMetaData(0, "0020|0037").split("\\")]
        points = [
            [float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")] for i in range(n)
        ]
    except (RuntimeError, ValueError):  # a tag missing (RuntimeError) or not numbers
        return None
    if len(orientation) != 6 or any(len(p) != 3 for p in points):
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    if not (math.isfinite(length) and length > 0):
        return None
    return np.asarray(points, dtype=np.float64) @ (normal / length)


def _instance_numbers(reader: sitk.ImageSeriesReader, n: int) -> list[int] | None:
    """Each slice's Instance Number in the order read; None unless all have a distinct one."""
    try:
        numbers = [int(float(reader.GetMetaData(i, "0020|0013"))) for i in range(n)]
    except (RuntimeError, ValueError):
        return None
    return numbers if len(set(numbers)) == n else None


def check_slice_positions(
    folder: Path, files: Sequence[str], reader: sitk.ImageSeriesReader, image: sitk.Image
) -> None:
    """Refuse a DICOM series whose slices are not evenly spaced (a missing file, a slice twice).

    ITK stacks the slices at one spacing (first to last position over n - 1): with a file
    missing, every slice after the gap would sit at the wrong place, and labels with it.
    An evenly spaced series whose Instance Numbers skip some is read (its geometry is right)
    with a warning that names the missing instances.
    """
    n = len(files)
    along = _slice_positions(reader, n) if n >= 2 else None
    if along is None:
        return
    steps = np.diff(along)
    sizes = np.abs(steps)
    numbers = _instance_numbers(reader, n)
    names = [Path(f).name for f in files]
    where = f"The DICOM series in '{folder}'"

    def slice_at(i: int) -> str:
        return f"slice {i} ('{names[i]}', at {along[i]:.6g} mm)"

    typical = float(np.median(sizes))
    together = np.flatnonzero(sizes <= _SLICE_TOLERANCE * typical)
    if together.size:
        pairs = "; ".join(f"{slice_at(i)} and {slice_at(i + 1)}" for i in together[:_SHOWN])
        raise TileSAMError(
            f"{where} has slices at the same position: {pairs}. It holds more than one "
            "volume (several acquisitions or time points) or a file twice. Put each "
            "acquisition in its own folder (or remove the duplicate file), then open it again."
        )
    base = _usual_step(sizes)
    ratios = sizes / base
    ordered = bool(np.all(np.sign(steps) == np.sign(steps[0])))
    gaps = np.flatnonzero(np.abs(ratios - 1) > _SLICE_TOLERANCE)
    if ordered and not gaps.size:
        _warn_missing_instances(where, base, numbers, slice_at)
        return
    consequence = (
        f"Read as one volume, its slices would be stacked {image.GetSpacing()[-1]:.4g} mm "
        "apart, every slice after a gap at the wrong place, and the labels written with "
        "that geometry too."
    )
    multiples = (np.abs(ratios - np.round(ratios)) <= _SLICE_TOLERANCE) & (ratios > 0.5)
    if not ordered or not multiples.all():
        shown = ", ".join(f"{s:.4g}" for s in steps[:20]) + (", ..." if n > 21 else "")
        raise TileSAMError(
            f"{where} is not evenly spaced: the steps between its {n} slice positions along "
            f"the slice normal are {shown} mm. {consequence} If slices are missing, copy them "
            "into the folder or export the whole series again; if it holds several stacks, "
            "put each in its own folder; then open it again."
        )
    found = []
    for i in gaps[:_SHOWN]:
        k = round(float(ratios[i]))
        at = ", ".join(f"{along[i] + steps[i] * j / k:.6g}" for j in range(1, k))
        text = f"{k - 1} slice(s) missing between {slice_at(i)} and {slice_at(i + 1)}, at {at} mm"
        if numbers is not None and abs(numbers[i + 1] - numbers[i]) == k:
            text += f" (instance number {_between(numbers[i], numbers[i + 1])})"
        found.append(text)
    more = f"; and {gaps.size - _SHOWN} more gaps" if gaps.size > _SHOWN else ""
    raise TileSAMError(
        f"{where} has missing slices: its slices lie {base:.4g} mm apart along the slice "
        f"normal, but {'; '.join(found)}{more}. {consequence} Copy the missing file(s) into "
        "the folder, or export the whole series again, then open it again."
    )


def _usual_step(sizes: np.ndarray) -> float:
    """The step most neighbours are apart (within the tolerance; the smaller on a tie): a
    missing slice makes one step twice as long, a moved one two steps uneven."""
    ordered = np.sort(sizes)
    low = np.searchsorted(ordered, ordered * (1 - _SLICE_TOLERANCE), side="left")
    high = np.searchsorted(ordered, ordered * (1 + _SLICE_TOLERANCE), side="right")
    return float(ordered[int(np.argmax(high - low))])  # argmax: the first (smallest) of ties


def _between(a: int, b: int) -> str:
    """The integers strictly between `a` and `b`, in order: ``"4, 5"``."""
    step = 1 if b > a else -1
    return ", ".join(str(m) for m in range(a + step, b, step))


def _warn_missing_instances(
    where: str, spacing: float, numbers: list[int] | None, slice_at: Callable[[int], str]
) -> None:
    """Warn when an evenly spaced series' Instance Numbers skip some between neighbours:
    files may be missing (the geometry read is right either way)."""
    if numbers is None:
        return
    steps = np.diff(numbers)
    if not (np.all(steps > 0) or np.all(steps < 0)) or np.all(np.abs(steps) == 1):
        return
    skipped = "; ".join(
        f"instance number {_between(numbers[i], numbers[i + 1])} between {slice_at(i)} and "
        f"{slice_at(i + 1)}"
        for i in np.flatnonzero(np.abs(steps) > 1)[:_SHOWN]
    )
    warnings.warn(
        f"{where} skips {skipped}: files of the series may be missing. Its slices are evenly "
        f"spaced ({spacing:.4g} mm apart), so the volume is read at that spacing; copy the "
        "missing files into the folder to read the whole series.",
        stacklevel=7,  # the caller of open_image
    )
