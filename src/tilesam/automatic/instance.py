"""Instance mode: the instance head's maps, then one seeded watershed over the whole slice.

The head (:mod:`tilesam.models.instance_head`) predicts, from each tile's cached embedding,
a foreground probability and two distances (to the object's centre, to its boundary).
Where tiles overlap (their halos), their maps are cross-faded, so the slice has one set of
maps without seams, as if embedded whole.

The watershed runs block by block: a block is a tile's owned region grown by ``overlap``
pixels on every side. In a block,

1. **seeds** are the connected pieces where the foreground probability reaches
   ``foreground``, the centre distance is below ``centre_distance`` and the boundary
   distance below ``boundary_distance`` (deep inside, near the middle of an object), of at
   least ``min_seed`` pixels of the model input (fewer image pixels in a tile enlarged into
   it);
2. the **watershed** floods the boundary distance from the seeds over the foreground;
3. an object whose mean foreground probability is below ``min_score`` is dropped (its score
   in the table is that mean);
4. an object is **kept by the block whose owned region holds its seed's centre**, and only
   there. A seed lies wholly in every block that holds its centre (seeds are far smaller than
   the overlap), so the same object is found the same way wherever it is kept: objects are
   never cut at tile borders nor found twice, and there is nothing to merge. An object
   reaching farther than the overlap past its block's owned region is clipped at the
   block's edge: the overlap is the size limit (:data:`OVERLAP`, 128 pixels; 256 measured
   the same on the validation nuclei, 70 to 110 pixels wide, in larger blocks).

The objects then go through the steps every mode shares: overlaps resolved, one connected
piece each, small holes filled, specks below ``min_size`` dropped.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from tilesam.automatic.grid import each_tile, magnification
from tilesam.automatic.masks import Instance, clean, ranked, resolve_overlaps
from tilesam.automatic.settings import AutoSettings
from tilesam.cache.progress import Progress
from tilesam.models.instance_head import head_maps, load_head
from tilesam.segment.session import Session

Tile = tuple[int, int]
Block = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive
#: pixels a block reaches past its tile's owned region on each side (the size limit)
OVERLAP = 128


class InstanceSlice:
    """Instance mode over one slice of a session (see the module docstring).

    Examples
    --------
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")
    >>> found = InstanceSlice(Session(image), AutoSettings()).run(0)
    >>> len(found) > 30
    True
    """

    def __init__(self, session: Session, settings: AutoSettings) -> None:
        self.session, self.settings = session, settings
        self.grid = session.grid
        self.head = load_head(settings.instance_head, session.model)
        # min_seed is in model-input pixels: the same objects at any magnification
        self.min_seed = settings.min_seed / magnification(session) ** 2
        self.stats: Counter = Counter()
        self._maps: OrderedDict[tuple[int, Tile], np.ndarray] = OrderedDict()

    def run(self, z: int, progress: Progress | None = None) -> list[Instance]:
        """The objects of slice `z`, one per object, ids not yet given."""
        found: list[Instance] = []
        for tile in each_tile(self.grid, progress):
            found += self.tile_objects(z, tile)
        return self.finish(found)

    def finish(self, found: list[Instance]) -> list[Instance]:
        """Overlaps resolved, one piece per object, holes filled, specks dropped."""
        s = self.settings
        kept = resolve_overlaps(ranked(found))
        kept = [c for o in kept if (c := clean(o, s.min_size, s.max_hole)) is not None]
        self.stats["objects"] += len(kept)
        return kept

    def tile_objects(self, z: int, tile: Tile) -> list[Instance]:
        """The objects whose seeds' centres `tile` owns, from the watershed of its block."""
        block = self.block(tile)
        maps = self.block_maps(z, block)
        start = time.perf_counter()
        labels, centres = watershed_block(maps, self.settings, self.min_seed)
        (ys, xs) = self.grid.inner_region(*tile)
        y0, x0 = block[:2]
        objects = []
        boxes = ndimage.find_objects(labels, max_label=len(centres))
        for index, ((cy, cx), box) in enumerate(zip(centres, boxes), start=1):
            owned = ys.start <= cy + y0 < ys.stop and xs.start <= cx + x0 < xs.stop
            if not owned or box is None:
                continue
            mask = labels[box] == index
            score = float(maps[0][box][mask].mean())
            if score < self.settings.min_score:
                continue  # the head doubts it: mostly faint foreground
            fields = {"z": z, "score": score, "stability": 1.0}
            origin = (y0 + box[0].start, x0 + box[1].start)
            obj = Instance.from_mask(mask, origin, point=(cy + y0, cx + x0), **fields)
            if obj is not None:
                objects.append(obj)
        self.stats["seconds_watershed"] += time.perf_counter() - start
        self.stats["tiles"] += 1
        return objects

    def block(self, tile: Tile) -> Block:
        """`tile`'s owned region grown by :data:`OVERLAP`, clipped to the slice."""
        (ys, xs), (h, w) = self.grid.inner_region(*tile), self.grid.slice_shape
        return (
            max(ys.start - OVERLAP, 0),
            max(xs.start - OVERLAP, 0),
            min(ys.stop + OVERLAP, h),
            min(xs.stop + OVERLAP, w),
        )

    def block_maps(self, z: int, block: Block) -> np.ndarray:
        """The slice's maps on `block`, ``(3, h, w)``: where tiles overlap, their maps
        cross-faded (:func:`ramp`), so that no seam is left for a seed to form on."""
        y0, x0, y1, x1 = block
        total = np.zeros((3, y1 - y0, x1 - x0), dtype=np.float32)
        weights = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
        h, w = self.grid.slice_shape
        halo = self.grid.halo
        near = (max(y0 - halo, 0), max(x0 - halo, 0), min(y1 + halo, h), min(x1 + halo, w))
        for tile in self.grid.tiles_for_box(*near):
            ys, xs = self.grid.tile_region(*tile)
            a0, b0, a1, b1 = (
                max(ys.start, y0),
                max(xs.start, x0),
                min(ys.stop, y1),
                min(xs.stop, x1),
            )
            if a1 <= a0 or b1 <= b0:
                continue
            weight = np.outer(
                ramp(ys, h, 2 * halo)[a0 - ys.start : a1 - ys.start],
                ramp(xs, w, 2 * halo)[b0 - xs.start : b1 - xs.start],
            )
            maps = self.tile_maps(z, tile)[
                :, a0 - ys.start : a1 - ys.start, b0 - xs.start : b1 - xs.start
            ]
            total[:, a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] += weight * maps
            weights[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] += weight
        return total / weights

    def tile_maps(self, z: int, tile: Tile) -> np.ndarray:
        """The head's maps of one tile (float16), kept while later blocks may need them:
        blocks go row by row and reach a few rows of tiles up, so the maps of the last
        few rows are enough."""
        key = (z, tile)
        if key in self._maps:
            self._maps.move_to_end(key)
            return self._maps[key]
        start = time.perf_counter()
        maps = head_maps(self.head, self.session.embedding(z, *tile)).astype(np.float16)
        self.stats["seconds_head"] += time.perf_counter() - start
        self._maps[key] = maps
        rows = 2 + 2 * -(-(OVERLAP + self.grid.halo) // self.grid.stride)
        while len(self._maps) > rows * self.grid.grid_shape[1]:
            self._maps.popitem(last=False)
        return maps


def ramp(span: slice, size: int, width: int) -> np.ndarray:
    """Weights of a tile's pixels along one axis for cross-fading overlapping tiles: rising
    over its first `width` pixels and falling over its last, except at the image's edges,
    so that two neighbours' weights add up to 1 where they overlap (by `width`).

    >>> ramp(slice(0, 8), 12, 4).tolist()  # the first tile: no ramp at the image's edge
    [1.0, 1.0, 1.0, 1.0, 0.875, 0.625, 0.375, 0.125]
    >>> (ramp(slice(0, 8), 12, 4)[4:] + ramp(slice(4, 12), 12, 4)[:4]).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    index = np.arange(span.start, span.stop, dtype=np.float32) + 0.5
    weight = np.ones(len(index), dtype=np.float32)
    if width > 0 and span.start > 0:
        weight = np.minimum(weight, (index - span.start) / width)
    if width > 0 and span.stop < size:
        weight = np.minimum(weight, (span.stop - index) / width)
    return weight


def watershed_block(
    maps: np.ndarray, settings: AutoSettings, min_seed: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Labels of one block's seeded watershed, and each label's seed centre ``(y, x)``;
    seeds of fewer than `min_seed` pixels are dropped.

    >>> maps = np.ones((3, 40, 40), np.float32)
    >>> yy, xx = np.mgrid[:40, :40]
    >>> for cx in (12, 27):  # two touching discs
    ...     d = np.hypot(yy - 20, xx - cx) / 8
    ...     inside = d < 1
    ...     maps[0][inside], maps[1][inside] = 1, np.minimum(maps[1], d)[inside]
    ...     maps[2][inside] = np.minimum(maps[2], d)[inside]
    >>> labels, centres = watershed_block(maps, AutoSettings())
    >>> int(labels.max()), centres.round().tolist()
    (2, [[20.0, 12.0], [20.0, 27.0]])
    """
    s = settings
    foreground = maps[0] >= s.foreground
    seeds = foreground & (maps[1] < s.centre_distance) & (maps[2] < s.boundary_distance)
    markers, count = ndimage.label(seeds)
    sizes = np.bincount(markers.ravel(), minlength=count + 1)
    small = sizes < min_seed
    small[0] = False
    if small.any():  # renumber the seeds that stay 1..count
        keep = np.flatnonzero(~small)
        relabel = np.zeros(count + 1, dtype=markers.dtype)
        relabel[keep] = np.arange(len(keep))
        markers, count = relabel[markers], len(keep) - 1
    if count == 0:
        return np.zeros(foreground.shape, dtype=np.int32), np.zeros((0, 2))
    ys, xs = np.nonzero(markers)  # each seed's centre: the mean of its pixels
    ids = markers[ys, xs]
    sizes = np.bincount(ids, minlength=count + 1)[1:]
    centres = np.stack([np.bincount(ids, v, count + 1)[1:] / sizes for v in (ys, xs)], axis=1)
    labels = watershed(maps[2], markers, mask=foreground)
    if s.min_cut_boundary > 0:
        return merge_inner_cuts(labels, maps[2], centres, s.min_cut_boundary)
    return labels, centres


def merge_inner_cuts(
    labels: np.ndarray, boundary: np.ndarray, centres: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Touching objects merged where the line between them runs through an object's inside:
    where the mean boundary distance along it is below `threshold` (between two touching
    objects it is near 1: both sides are edges). Two seeds in one elongated object cut it
    in two; this joins the halves. A merged object keeps the centre that comes first in
    ``(y, x)`` order, so every block that holds it whole agrees on who keeps it.

    >>> labels = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    >>> inside = np.full((2, 4), 0.2)  # the cut runs through the inside: merged
    >>> merge_inner_cuts(labels, inside, np.array([[0.5, 0.5], [0.5, 2.5]]), 0.6)[0].tolist()
    [[1, 1, 1, 1], [1, 1, 1, 1]]
    >>> edges = np.array([[0.2, 0.9, 0.9, 0.2]] * 2)  # two objects' edges meet: kept apart
    >>> merge_inner_cuts(labels, edges, np.array([[0.5, 0.5], [0.5, 2.5]]), 0.6)[0].max()
    np.int64(2)
    """
    pairs, values = [], []
    for a, b, va, vb in (
        (labels[:, :-1], labels[:, 1:], boundary[:, :-1], boundary[:, 1:]),
        (labels[:-1], labels[1:], boundary[:-1], boundary[1:]),
    ):
        cut = (a != b) & (a > 0) & (b > 0)
        pairs.append(np.stack([np.minimum(a[cut], b[cut]), np.maximum(a[cut], b[cut])], 1))
        values.append((va[cut] + vb[cut]) / 2)
    pairs, values = np.concatenate(pairs), np.concatenate(values)
    if not len(pairs):
        return labels, centres
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    mean = np.bincount(inverse.ravel(), values) / np.bincount(inverse.ravel())
    root = np.arange(len(centres) + 1)
    order = np.lexsort((centres[:, 1], centres[:, 0])) + 1  # labels by centre, (y, x)
    rank = np.empty_like(root)
    rank[order], rank[0] = np.arange(1, len(order) + 1), 0

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for a, b in unique[mean < threshold]:
        ra, rb = find(a), find(b)
        if ra != rb:  # the earlier centre is the group's
            keep, drop = (ra, rb) if rank[ra] < rank[rb] else (rb, ra)
            root[drop] = keep
    roots = np.array([find(i) for i in range(len(root))])
    kept = np.flatnonzero(roots == np.arange(len(roots)))[1:]
    number = np.zeros(len(roots), dtype=labels.dtype)
    number[kept] = np.arange(1, len(kept) + 1)
    return number[roots][labels], centres[kept - 1]
