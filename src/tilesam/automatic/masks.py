"""Objects as small windows, and what segment-everything does to a batch of them.

An :class:`Instance` is one object on one slice, kept as the mask inside its bounding box
(like :class:`tilesam.segment.result.SegmentResult`): a slide's objects then take memory in
proportion to their own area, never the slide's. The operations here work on lists of
them, located through a :class:`BoxIndex`, so that each object is compared only with its
neighbours:

- :func:`non_max_suppression`: the best-scored of overlapping duplicates;
- :func:`resolve_overlaps`: a pixel claimed by two objects stays with the better-scored;
- :func:`clean`: one connected piece per object, small holes filled, specks removed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

Region = tuple[int, int, int, int]
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class Instance:
    """One object on one slice: its mask inside its bounding box, and how it was found.

    Attributes
    ----------
    window : numpy.ndarray, bool, shape (h, w)
        The mask inside its tight bounding box.
    offset : (int, int)
        ``(y0, x0)`` of the window in the slice.
    z : int
        The slice (0 for a 2D image).
    score, stability : float
        The decoder's predicted IoU and the mask's stability (see :class:`AutoSettings`).
    point : (float, float) or None
        The prompt ``(y, x)`` it was decoded from, in image pixels.
    tiles : int
        Tiles predicted for it (more than one for an object that crosses tile borders).
    id : int
        Its object id, once labelled (0 before).

    Examples
    --------
    >>> mask = np.zeros((10, 10), bool); mask[2:4, 3:8] = True
    >>> obj = Instance.from_mask(mask, origin=(100, 200), score=0.9)
    >>> obj.bbox, obj.area, obj.window.shape
    ((102, 203, 104, 208), 10, (2, 5))
    """

    window: np.ndarray
    offset: tuple[int, int]
    z: int = 0
    score: float = 0.0
    stability: float = 0.0
    point: tuple[float, float] | None = None
    tiles: int = 1
    id: int = 0

    @classmethod
    def from_mask(
        cls, mask: np.ndarray, origin: tuple[int, int] = (0, 0), **fields
    ) -> Instance | None:
        """The object of a boolean `mask` whose first pixel is at `origin`; None when empty."""
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if rows.size == 0:
            return None
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        window = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=bool)
        return cls(window, (int(origin[0] + y0), int(origin[1] + x0)), **fields)

    @property
    def bbox(self) -> Region:
        """``(y0, x0, y1, x1)`` in the slice, end-exclusive."""
        (y, x), (h, w) = self.offset, self.window.shape
        return (y, x, y + h, x + w)

    @property
    def area(self) -> int:
        """Pixels of the object."""
        return int(np.count_nonzero(self.window))

    def crop(self, region: Region) -> np.ndarray:
        """The mask inside ``(y0, x0, y1, x1)``, as a boolean array of that region's shape."""
        y0, x0, y1, x1 = region
        out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        inter = _intersection(self.bbox, region)
        if inter is not None:
            iy0, ix0, iy1, ix1 = inter
            oy, ox = self.offset
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = self.window[
                iy0 - oy : iy1 - oy, ix0 - ox : ix1 - ox
            ]
        return out

    def with_mask(self, mask: np.ndarray, origin: tuple[int, int]) -> Instance | None:
        """This object with another mask (e.g. its pixels not claimed by others)."""
        fields = {"z": self.z, "score": self.score, "stability": self.stability}
        fields |= {"point": self.point, "tiles": self.tiles, "id": self.id}
        return Instance.from_mask(mask, origin, **fields)


def overlap(a: Instance, b: Instance) -> int:
    """Pixels two objects (of one slice) share.

    >>> a = Instance(np.ones((4, 4), bool), (0, 0)); b = Instance(np.ones((4, 4), bool), (2, 2))
    >>> overlap(a, b)
    4
    """
    inter = _intersection(a.bbox, b.bbox)
    if inter is None:
        return 0
    return int(np.count_nonzero(a.crop(inter) & b.crop(inter)))


def iou(a: Instance, b: Instance) -> float:
    """Intersection over union of two objects' masks.

    >>> a = Instance(np.ones((4, 4), bool), (0, 0)); b = Instance(np.ones((4, 4), bool), (2, 2))
    >>> round(iou(a, b), 3)
    0.143
    """
    shared = overlap(a, b)
    return shared / (a.area + b.area - shared) if shared else 0.0


class BoxIndex:
    """Objects filed by the cells of a coarse grid their bounding boxes touch: which kept
    objects may overlap a new one, without comparing it with all of them."""

    def __init__(self, cell: int = 256) -> None:
        self.cell = int(cell)
        self._cells: dict[tuple[int, int], list[int]] = defaultdict(list)

    def _keys(self, bbox: Region) -> Iterable[tuple[int, int]]:
        y0, x0, y1, x1 = (v // self.cell for v in (bbox[0], bbox[1], bbox[2] - 1, bbox[3] - 1))
        return ((cy, cx) for cy in range(y0, y1 + 1) for cx in range(x0, x1 + 1))

    def add(self, key: int, bbox: Region) -> None:
        """File object `key` under the cells its box touches."""
        for cell in self._keys(bbox):
            self._cells[cell].append(key)

    def near(self, bbox: Region) -> list[int]:
        """Keys of the objects filed in any cell `bbox` touches, in filing order."""
        found = {k for cell in self._keys(bbox) for k in self._cells.get(cell, ())}
        return sorted(found)


def connected_groups(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Items ``0..n-1`` in groups joined by `pairs`, directly or through others (each group
    in item order, groups in order of their first item).

    >>> connected_groups(5, [(0, 2), (3, 2)])
    [[0, 2, 3], [1], [4]]
    """
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def ranked(instances: Iterable[Instance]) -> list[Instance]:
    """Best first: by predicted IoU times stability, then predicted IoU, then position (a
    stable order). The product ranked best on validation nuclei (``docs/automatic.md``)."""
    return sorted(instances, key=lambda o: (-o.score * o.stability, -o.score, o.z, o.offset))


def non_max_suppression(instances: Iterable[Instance], iou_threshold: float) -> list[Instance]:
    """The best-ranked objects, dropping any whose IoU with a kept one exceeds the threshold.

    >>> a = Instance(np.ones((4, 4), bool), (0, 0), score=0.9)
    >>> b = Instance(np.ones((4, 4), bool), (0, 1), score=0.8)  # a duplicate of a
    >>> c = Instance(np.ones((4, 4), bool), (9, 9), score=0.7)
    >>> [o.score for o in non_max_suppression([b, c, a], 0.5)]
    [0.9, 0.7]
    """
    kept: list[Instance] = []
    index = BoxIndex()
    for obj in ranked(instances):
        if all(iou(obj, kept[k]) <= iou_threshold for k in index.near(obj.bbox)):
            index.add(len(kept), obj.bbox)
            kept.append(obj)
    return kept


def resolve_overlaps(instances: Sequence[Instance]) -> list[Instance]:
    """Give each pixel to the first of `instances` (in their order) that claims it; objects
    left with no pixel are dropped.

    >>> a = Instance(np.ones((4, 4), bool), (0, 0)); b = Instance(np.ones((4, 4), bool), (2, 2))
    >>> [o.area for o in resolve_overlaps([a, b])]
    [16, 12]
    """
    kept: list[Instance] = []
    index = BoxIndex()
    for obj in instances:
        mask = obj.window.copy()
        for k in index.near(obj.bbox):
            mask &= ~kept[k].crop(obj.bbox)
        rest = obj.with_mask(mask, obj.offset) if mask.any() else None
        if rest is not None:
            index.add(len(kept), rest.bbox)
            kept.append(rest)
    return kept


def clean(obj: Instance, min_size: int, max_hole: int) -> Instance | None:
    """`obj` as one connected piece (its largest; 8-connected), holes of up to `max_hole`
    pixels filled; None when that piece has fewer than `min_size` pixels.

    >>> mask = np.zeros((9, 12), bool); mask[1:8, 1:8] = True; mask[4, 4] = False
    >>> mask[1:3, 10:12] = True  # a speck beside it
    >>> obj = clean(Instance.from_mask(mask), min_size=10, max_hole=1)
    >>> obj.area, obj.bbox
    (49, (1, 1, 8, 8))
    """
    pieces, count = ndimage.label(obj.window, structure=_EIGHT)
    mask = obj.window
    if count > 1:
        sizes = np.bincount(pieces.ravel())[1:]
        mask = pieces == 1 + int(np.argmax(sizes))
    if max_hole > 0:
        mask = fill_holes(mask, max_hole)
    if np.count_nonzero(mask) < max(min_size, 1):
        return None
    return obj.with_mask(mask, obj.offset)


def fill_holes(mask: np.ndarray, max_hole: int) -> np.ndarray:
    """`mask` with its holes (background not connected to the outside, 4-connected) of up
    to `max_hole` pixels filled."""
    # A ring of background around the window: the outside is then one piece, the ring's.
    background, count = ndimage.label(np.pad(~mask, 1, constant_values=True))
    if count <= 1:
        return mask
    small = np.bincount(background.ravel()) <= max_hole
    small[[0, background[0, 0]]] = False
    return mask | small[background[1:-1, 1:-1]]


def _intersection(a: Region, b: Region) -> Region | None:
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[2], b[2]), min(a[3], b[3])
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None


def shifted(obj: Instance, dy: int, dx: int) -> Instance:
    """`obj` moved by ``(dy, dx)`` pixels (e.g. from tile to image coordinates)."""
    return replace(obj, offset=(obj.offset[0] + dy, obj.offset[1] + dx))
