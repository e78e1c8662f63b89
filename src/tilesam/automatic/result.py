"""`AutoResult`: every object of an image, kept as windows; labels and table on request.

A 20 000 x 20 000 slide's labels are 1.6 GB as a uint32 array, but its objects are small:
the result keeps each object's mask inside its bounding box (memory in proportion to the
objects' area, a byte per object pixel) and paints labels only when asked, one block at a
time (:meth:`AutoResult.block`, :meth:`AutoResult.save`). :attr:`AutoResult.labels` builds
the whole array, once, for images that fit in memory.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.automatic.masks import BoxIndex, Instance
from tilesam.automatic.settings import AutoSettings
from tilesam.automatic.table import as_table, columns, object_rows, write_csv
from tilesam.automatic.write import LabelView, label_dtype, write_label_blocks
from tilesam.io.source import ImageSource

Region = tuple[int, int, int, int]


@dataclass(eq=False)
class AutoResult:
    """The objects segment-everything found, with ids unique over the image (0 background).

    Attributes
    ----------
    objects : list of Instance
        Every object's piece on every slice it is on, each with its ``id``.
    shape : tuple of int
        ``(H, W)`` of a 2D result, ``(Z, H, W)`` of a volume's.
    mode : str
        The mode that found them (``"grid"``).
    settings : AutoSettings
        The thresholds used.
    spacing, origin : tuple of float
        The source's geometry, ``(z,) y, x``: the table's physical units, the files'.
    georeference : optional
        The source's CRS and transform (a written ``.tif`` is then a GeoTIFF).
    stats : dict
        What the work cost: points decoded and skipped, candidates, objects followed across
        tile borders and the tile predictions that took, seconds decoding and following.
    prompt_ids : dict
        For objects segmented from the features of a prompt file, each object's feature id.

    Examples
    --------
    >>> window = np.ones((2, 3), bool)
    >>> r = AutoResult([Instance(window, (1, 1), id=1)], (5, 6), "grid", AutoSettings())
    >>> r.n_objects, r.labels.dtype, int(r.labels.sum()), r.block(0, (0, 0, 2, 2)).tolist()
    (1, dtype('uint32'), 6, [[0, 0], [0, 1]])
    """

    objects: list[Instance]
    shape: tuple[int, ...]
    mode: str
    settings: AutoSettings
    spacing: tuple[float, ...] = ()
    origin: tuple[float, ...] = ()
    georeference: Any = None
    stats: dict[str, Any] = field(default_factory=dict)
    prompt_ids: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spacing = tuple(self.spacing) or (1.0,) * len(self.shape)
        self.origin = tuple(self.origin) or (0.0,) * len(self.shape)
        self._by_slice: dict[int, list[Instance]] = defaultdict(list)
        self._index: dict[int, BoxIndex] = defaultdict(BoxIndex)
        for obj in self.objects:
            self._index[obj.z].add(len(self._by_slice[obj.z]), obj.bbox)
            self._by_slice[obj.z].append(obj)

    @property
    def is_volume(self) -> bool:
        """Whether the result is 3D, ``(Z, H, W)``."""
        return len(self.shape) == 3

    @property
    def n_objects(self) -> int:
        """Objects (3D objects in a volume), ids ``1..n_objects``."""
        return len({obj.id for obj in self.objects})

    def __repr__(self) -> str:
        return f"AutoResult({self.n_objects} objects, shape={self.shape}, mode={self.mode!r})"

    def block(self, z: int, region: Region) -> np.ndarray:
        """The labels ``(y1 - y0, x1 - x0)`` uint32 of ``(y0, x0, y1, x1)`` of slice `z`
        (the slice's own index in a volume; 0 for a 2D result)."""
        y0, x0, y1, x1 = region
        out = np.zeros((y1 - y0, x1 - x0), dtype=np.uint32)
        pieces = self._by_slice.get(z, [])
        for k in self._index[z].near(region) if pieces else ():
            obj = pieces[k]
            out[obj.crop(region)] = obj.id
        return out

    def view(self) -> LabelView:
        """The labels as a :class:`LabelView`: sliced like an array, painted on request."""
        dtype = label_dtype(max((o.id for o in self.objects), default=0))
        block = self.block if self.is_volume else lambda z, region: self.block(self._z2d, region)
        return LabelView(self.shape, dtype, block)

    @property
    def _z2d(self) -> int:
        """The slice a 2D result's objects lie on (a slice of a volume keeps its index)."""
        return self.objects[0].z if self.objects else 0

    @cached_property
    def labels(self) -> np.ndarray:
        """The whole label image, uint32, built on first access (4 bytes a pixel: for
        huge images use :meth:`save`, which writes block by block)."""
        return self.view().read().astype(np.uint32, copy=False)

    def rows(self) -> list[dict[str, Any]]:
        """The table's rows: one dict per object (see :mod:`tilesam.automatic.table`)."""
        return object_rows(
            self.objects, volume=self.is_volume, spacing=self.spacing, mode=self.mode
        )

    @property
    def table(self) -> Any:
        """One row per object: a pandas DataFrame where pandas is installed, else a list of
        dicts (columns: :mod:`tilesam.automatic.table`)."""
        return as_table(self.rows(), columns(self.is_volume))

    def save(self, path: str | os.PathLike[str], *, like: ImageSource | None = None) -> Path:
        """Write the labels (``.tif``, ``.ome.zarr``, ``.nii.gz``, ...), block by block where
        the format has blocks, with the source's geometry; replaced only once complete.

        Examples
        --------
        >>> import tempfile
        >>> from tilesam.io import open_image
        >>> r = AutoResult([Instance(np.ones((2, 3), bool), (1, 1), id=7)], (5, 6), "grid",
        ...                AutoSettings(), spacing=(0.5, 0.5))
        >>> back = open_image(r.save(Path(tempfile.mkdtemp()) / "labels.tif"))
        >>> back.spacing, int(back.read().max()), back.dtype
        ((0.5, 0.5), 7, dtype('uint8'))
        """
        return write_label_blocks(
            path,
            self.view(),
            spacing=self.spacing,
            origin=self.origin,
            georeference=self.georeference,
            like=like,
        )

    def save_polygons(
        self, path: str | os.PathLike[str], *, simplify: float | None = None,
        overwrite: bool = False,
    ) -> Path:  # fmt: skip
        """Write the objects as polygons (``.gpkg``, ``.geojson``, ``.shp``) in the image's
        CRS: see :func:`tilesam.automatic.polygons.save_polygons`."""
        from tilesam.automatic.polygons import save_polygons

        return save_polygons(self, path, simplify=simplify, overwrite=overwrite)

    def save_table(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV (a header line even with no object), atomically."""
        return write_csv(path, self.rows(), columns(self.is_volume))


def geometry(source: ImageSource, volume: bool) -> dict[str, Any]:
    """The spacing, origin and georeference a result over `source` keeps (a single slice of
    a volume keeps the in-plane geometry)."""
    keep = 3 if volume else 2
    spacing: Sequence[float] = source.spacing[-keep:]
    origin: Sequence[float] = source.origin[-keep:]
    return {"spacing": tuple(spacing), "origin": tuple(origin), "georeference": source.georeference}
