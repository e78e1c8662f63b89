"""`write_ome_zarr`: labels or a mask as an OME-Zarr 0.5 image (zarr v3).

The voxel spacing is written as the level's ``scale`` and the origin as its
``translation``, so that `tilesam.open_image` (and napari, through the plugin's reader)
places the result exactly over its source. OME-Zarr 0.5 has no rotation: a volume's
direction cosines, or a GeoTIFF's CRS, are not kept (write NIfTI / NRRD / MHA, or a
GeoTIFF, for those).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from tilesam.errors import TileSAMError

#: The ending that selects OME-Zarr (a folder): plain ``.zarr`` is left to embedding caches.
OME_ZARR_SUFFIX = ".ome.zarr"
_CHUNK = 1024  # pixels per side of a chunk: a slice of a huge image is never whole in memory

#: A block of a 2D image: ``(y0, x0, y1, x1)``, end-exclusive.
Region = tuple[int, int, int, int]


def is_ome_zarr(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names an OME-Zarr image (ends in ``.ome.zarr``, any case).

    >>> is_ome_zarr("labels.OME.zarr"), is_ome_zarr("cache.zarr")
    (True, False)
    """
    return Path(path).name.lower().endswith(OME_ZARR_SUFFIX)


def holds_ome_image(path: str | os.PathLike[str]) -> bool:
    """Whether the folder `path` holds an OME-Zarr image (zarr v3 ``ome`` or v2
    ``multiscales`` attributes): what a new image may replace, unlike an embedding cache.
    """
    path = Path(path)
    try:
        if (path / "zarr.json").is_file():
            return "ome" in json.loads((path / "zarr.json").read_text()).get("attributes", {})
        if (path / ".zattrs").is_file():
            return "multiscales" in json.loads((path / ".zattrs").read_text())
    except (OSError, ValueError, AttributeError):  # unreadable or not JSON: not an image
        pass
    return False


def write_ome_zarr(
    path: str | os.PathLike[str],
    data: Any | Callable[[Region], np.ndarray],
    *,
    spacing: Sequence[float] | None = None,
    origin: Sequence[float] | None = None,
    shape: tuple[int, ...] | None = None,
    dtype: Any = None,
) -> None:
    """Write a ``(z, y, x)`` or ``(y, x)`` image to a new OME-Zarr folder, chunk by chunk.

    Parameters
    ----------
    path : str or Path
        The folder to create; callers write to a temporary name and rename it into place
        (see `tilesam.io.atomic.atomic_output`), which replaces an existing image.
    data : array-like or callable
        The image (numpy, dask, zarr: anything sliced like numpy; read one chunk at a
        time), or, for 2D, a function returning its block ``(y0, x0, y1, x1)`` (then give
        `shape` and `dtype`).
    spacing, origin : sequence of float, optional
        Physical size of a pixel and position of the first one, ``(z,) y, x`` order
        (default 1 and 0).

    Examples
    --------
    >>> import tempfile
    >>> from tilesam.io import open_image
    >>> path = Path(tempfile.mkdtemp()) / "labels.ome.zarr"
    >>> labels = np.zeros((3, 40, 50), np.uint8)
    >>> labels[1, 10:20, 5:15] = 7
    >>> write_ome_zarr(path, labels, spacing=(2.0, 0.5, 0.5), origin=(10.0, 0.0, -4.0))
    >>> back = open_image(path)
    >>> back.axes, back.spacing, back.origin, int(back.read().max())
    ('ZYX', (2.0, 0.5, 0.5), (10.0, 0.0, -4.0), 7)
    """
    if callable(data):
        read = lambda region, index: data(region)  # noqa: E731
    else:
        shape, dtype, read = tuple(data.shape), data.dtype, _block_reader(data)
    ndim = len(shape)
    group = zarr.create_group(
        os.fspath(path), zarr_format=3, attributes={"ome": _metadata(ndim, spacing, origin)}
    )
    chunks = (*(1,) * (ndim - 2), *(min(_CHUNK, n) for n in shape[-2:]))
    array = group.create_array(
        "0",
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        fill_value=0,
        dimension_names=list("zyx"[-ndim:]),
    )
    height, width = shape[-2:]
    for index in np.ndindex(*shape[:-2]):
        for y in range(0, height, chunks[-2]):
            for x in range(0, width, chunks[-1]):
                region = (y, x, min(y + chunks[-2], height), min(x + chunks[-1], width))
                at = (*index, slice(region[0], region[2]), slice(region[1], region[3]))
                array[at] = np.asarray(read(region, index))


def _block_reader(data: Any) -> Callable[[Region, tuple[int, ...]], np.ndarray]:
    def read(region: Region, index: tuple[int, ...]) -> np.ndarray:
        return data[(*index, slice(region[0], region[2]), slice(region[1], region[3]))]

    return read


def _metadata(
    ndim: int, spacing: Sequence[float] | None, origin: Sequence[float] | None
) -> dict[str, Any]:
    """The group's ``ome`` attributes: one multiscale image of one level, ``"0"``."""
    scale = [1.0] * ndim if spacing is None else [float(v) for v in spacing]
    translation = [0.0] * ndim if origin is None else [float(v) for v in origin]
    if len(scale) != ndim or len(translation) != ndim:
        raise TileSAMError(
            f"An OME-Zarr image of {ndim} dimensions needs {ndim} spacing and origin values, "
            f"got spacing {scale} and origin {translation}."
        )
    transforms = [
        {"type": "scale", "scale": scale},
        {"type": "translation", "translation": translation},
    ]
    multiscale = {  # 0.5 keeps the version once, in the "ome" object, not here
        "axes": [{"name": a, "type": "space"} for a in "zyx"[-ndim:]],
        "datasets": [{"path": "0", "coordinateTransformations": transforms}],
    }
    return {"version": "0.5", "multiscales": [multiscale]}
