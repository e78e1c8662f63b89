"""A prompt as users give it, made into a checked :class:`~tilesam.decode.prompt.Prompt` on
one slice of a session's image.

Points and boxes come in pixels of a slice, ``(y, x)`` and ``(y0, x0, y1, x1)``; on a volume
also ``(z, y, x)`` and ``(z, y0, x0, y1, x1)``, all on one slice (a volume's slice is never
guessed); on a georeferenced raster also in map coordinates, in any CRS
(:mod:`tilesam.io.map_prompts`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource


def checked_prompt(
    points: Any, labels: Any, box: Any, shape: tuple[int, int], **extra: Any
) -> Prompt:
    """`points` (a :class:`~tilesam.decode.prompt.Prompt`, or ``(y, x)`` points with
    `labels` and `box`) checked against a slice of `shape`.

    >>> checked_prompt([(3, 4)], None, None, (8, 8)).points.tolist()
    [[3.0, 4.0]]
    """
    if isinstance(points, Prompt):  # checked again: it may come from another image
        if extra.get("mask") is None:
            extra["mask"] = points.mask
        points, labels, box = points.points, points.labels, points.box
    return Prompt.make(points, labels, box, shape, **extra)


def check_z(source: ImageSource, z: Any) -> None:
    """Refuse a slice `z` the image does not have."""
    n = source.n_slices
    if not (isinstance(z, int | np.integer) and 0 <= z < n):
        raise TileSAMError(
            f"Slice z={z!r} does not exist: {source.describe()} has {n} slice(s) "
            f"(valid: 0..{n - 1})."
        )


def slice_of(source: ImageSource, z: int | None, points: Any, box: Any) -> tuple[int, Any, Any]:
    """The slice a prompt is on, and its 2D points and box: `z`, or a volume's
    ``(z, y, x)`` points / ``(z, y0, x0, y1, x1)`` box; a 2D image's slice 0."""
    volume, named = source.n_slices > 1, set()
    if volume and points is not None and not isinstance(points, Prompt) and len(points):
        zyx = np.asarray(points, dtype=object)
        if zyx.ndim == 2 and zyx.shape[1] == 3:
            named.update(float(v) for v in zyx[:, 0])
            points = [tuple(p[1:]) for p in zyx]
    if volume and box is not None and np.size(box) == 5:
        named.add(float(np.ravel(box)[0]))
        box = tuple(np.ravel(box)[1:])
    if z is not None:
        named.add(z)
    if len(named) > 1:
        raise TileSAMError(
            f"The prompt is on slices {sorted(named)}: segment one slice at a time, or "
            "carry an object through the volume with propagate_mask."
        )
    if not named:
        if volume:
            raise TileSAMError(
                f"{source.describe()} is a volume of {source.n_slices} slices: "
                "give z= (the slice), or (z, y, x) points / a (z, y0, x0, y1, x1) box."
            )
        return 0, points, box
    found = named.pop()
    if not float(found).is_integer():
        raise TileSAMError(f"A slice is a whole number, got z={found!r}.")
    return int(found), points, box


def from_map(
    source: ImageSource,
    shape: tuple[int, int],
    points: Any,
    box: Any,
    points_xy: Any,
    box_xy: Any,
    crs: Any,
) -> tuple[Any, Any, Any]:
    """Pixel points, labels and box, on a slice of `shape`, of a prompt given in map
    coordinates of the georeferenced `source`."""
    from tilesam.io.map_prompts import prompt_box_from_map, prompt_points_from_map

    if points is not None or box is not None:
        raise TileSAMError(
            "Give the prompt in pixels (points=, box=) or on the map (points_xy=, box_xy=, "
            "crs=), not both."
        )
    geo = source.georeference
    pixels, labels = (None, None)
    if points_xy is not None:
        pixels, labels = prompt_points_from_map(points_xy, geo, crs=crs, shape=shape)
    if box_xy is not None:
        box = prompt_box_from_map(box_xy, geo, crs=crs, shape=shape)
    return pixels, labels, box
