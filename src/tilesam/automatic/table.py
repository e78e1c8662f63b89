"""The table of objects: one row per object, from its pieces, in pixels and physical units.

Columns, for a 2D image: ``id``, ``area`` (pixels), ``area_physical`` (area times the pixel
spacing, in the source's units, e.g. µm² for microscopy, mm² for medical images, map
units for GeoTIFFs), ``centroid_y``, ``centroid_x`` (pixels), ``bbox_y0``, ``bbox_x0``,
``bbox_y1``, ``bbox_x1`` (end-exclusive), ``score`` (the decoder's predicted IoU),
``stability``, ``tiles`` (tiles predicted for it) and ``mode``. For a volume ``volume`` and
``volume_physical`` replace the areas, ``centroid_z``, ``bbox_z0``, ``bbox_z1`` and
``n_slices`` are added, and ``score`` and ``stability`` are the means of the pieces',
weighted by their areas.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.automatic.masks import Instance
from tilesam.io.atomic import atomic_output


def object_rows(
    pieces: Sequence[Instance], *, volume: bool, spacing: Sequence[float], mode: str
) -> list[dict[str, Any]]:
    """One row per object id of `pieces` (each with its id set), in id order.

    Examples
    --------
    >>> mask = np.ones((2, 3), bool)
    >>> rows = object_rows([Instance(mask, (10, 20), id=1, score=0.9)], volume=False,
    ...                    spacing=(0.5, 0.5), mode="grid")
    >>> {k: rows[0][k] for k in ("id", "area", "area_physical", "centroid_y", "bbox_x1")}
    {'id': 1, 'area': 6, 'area_physical': 1.5, 'centroid_y': 10.5, 'bbox_x1': 23}
    """
    groups: dict[int, list[Instance]] = {}
    for piece in pieces:
        groups.setdefault(piece.id, []).append(piece)
    return [_row(groups[k], volume, spacing, mode) for k in sorted(groups)]


def _row(
    pieces: list[Instance], volume: bool, spacing: Sequence[float], mode: str
) -> dict[str, Any]:
    areas = np.array([p.area for p in pieces], dtype=float)
    total = float(areas.sum())
    centres = np.array([[p.z, *_centroid(p)] for p in pieces])
    z, y, x = (areas @ centres) / total
    y0, x0 = min(p.bbox[0] for p in pieces), min(p.bbox[1] for p in pieces)
    y1, x1 = max(p.bbox[2] for p in pieces), max(p.bbox[3] for p in pieces)
    size = "volume" if volume else "area"
    row: dict[str, Any] = {"id": pieces[0].id, size: int(total)}
    row[f"{size}_physical"] = total * float(np.prod(spacing[-(3 if volume else 2) :]))
    if volume:
        row["centroid_z"] = float(z)
    row |= {"centroid_y": float(y), "centroid_x": float(x)}
    if volume:
        row["bbox_z0"] = min(p.z for p in pieces)
    row |= {"bbox_y0": y0, "bbox_x0": x0}
    if volume:
        row["bbox_z1"] = max(p.z for p in pieces) + 1
    row |= {"bbox_y1": y1, "bbox_x1": x1}
    row["score"] = float(areas @ [p.score for p in pieces] / total)
    row["stability"] = float(areas @ [p.stability for p in pieces] / total)
    row["tiles"] = max(p.tiles for p in pieces)
    if volume:
        row["n_slices"] = len({p.z for p in pieces})
    row["mode"] = mode
    return row


def _centroid(piece: Instance) -> tuple[float, float]:
    ys, xs = np.nonzero(piece.window)
    return piece.offset[0] + float(ys.mean()), piece.offset[1] + float(xs.mean())


def as_table(rows: list[dict[str, Any]], names: list[str]) -> Any:
    """A pandas DataFrame of `rows` (columns `names`) where pandas is installed, else the
    rows themselves (a list of dicts)."""
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=names)


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]], columns: list[str]) -> Path:
    """Write `rows` as CSV (a header line even without rows), atomically.

    >>> import tempfile
    >>> path = write_csv(Path(tempfile.mkdtemp()) / "t.csv", [{"id": 1, "area": 6}], ["id", "area"])
    >>> path.read_text().splitlines()
    ['id,area', '1,6']
    """
    path = Path(path).expanduser()
    with atomic_output(path) as partial, open(partial, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def columns(volume: bool) -> list[str]:
    """The table's columns, in order (what an empty table's header holds).

    >>> columns(False)[:3]
    ['id', 'area', 'area_physical']
    """
    if volume:
        return [
            "id", "volume", "volume_physical", "centroid_z", "centroid_y", "centroid_x",
            "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1", "score",
            "stability", "tiles", "n_slices", "mode",
        ]  # fmt: skip
    return [
        "id", "area", "area_physical", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0",
        "bbox_y1", "bbox_x1", "score", "stability", "tiles", "mode",
    ]  # fmt: skip
