"""Objects that cross tile borders: follow the mask from tile to tile and stitch it.

A prompt is answered in the tile whose owned (inner) region holds it (a point), or in
the tile that holds the whole box (a box; a box that fits in no tile is answered in
every tile whose owned region it overlaps, clipped to each). The mask decoder only sees
that tile, so an object crossing the tile's edge would be cut off there. The same idea
as slice-to-slice propagation in 3D carries it on:

1. Predict the tile. If the mask comes within ``margin`` pixels (about one cell of the
   decoder's low-resolution output) of an edge that has a neighbouring tile (not the
   image border), that neighbour is queued; a corner queues the diagonal neighbour.
2. The neighbour's prompt is derived from the mask so far: one positive point per
   connected piece of the mask inside the neighbour's halo, i.e. the strip that the
   parent owns and the neighbour also sees (the deepest pixel of each of the largest
   ``MAX_DERIVED_POINTS`` pieces), plus the user's own points and box where they fall
   inside the neighbour. No box is derived: the known part is a thin strip of the
   object, and a box around it would tell the decoder the object ends there. Tiles without
   a halo share no pixel: the deepest points of the mask's band along the shared side are
   moved across it, onto the neighbour's first row or column.
3. Breadth first, at most ``max_tiles`` predictions; prompts from several parents of
   one tile are pooled before it is predicted. A tile already predicted is predicted
   once more (``MAX_REVISITS``) only if a neighbour's mask brings points its own mask
   missed: an object that leaves a tile and comes back into it (a U, a ring) is whole.
4. Stitching: every pixel comes from the tile that owns it when that tile was
   predicted, else from the union of the predicted tiles that see it (the halo of a
   mask that stops before its tile's edge). So the result equals each predicted
   tile's mask on its owned region, and owned regions never overlap.

The prediction itself is a callable, ``predict(ty, tx, points, labels, box, multimask)
-> (mask, score)`` in tile coordinates, so the stitching does not depend on how
embeddings are stored. An optional ``ready(ty, tx)`` says which tiles may be predicted now
(e.g. those already embedded, for an answer that must come at once): the object stops at
the others, which the result lists as ``waiting``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from tilesam.cache.tiling import TileGrid
from tilesam.decode.prompt import Box, Prompt
from tilesam.segment.result import SegmentResult, TileVisit

MAX_DERIVED_POINTS = 3
MAX_REVISITS = 1  # times a tile may be predicted again with points its mask missed
# Pixels of a mask's band along a tile's side whose deepest points cross to a neighbour that
# shares no pixel with it (no halo).
_ACROSS_BAND = 8
Tile = tuple[int, int]
#: ``predict(ty, tx, points_yx, labels, box, multimask) -> (mask (h, w) bool, score)``
TilePredictor = Callable[[int, int, np.ndarray, np.ndarray, Box | None, bool], tuple]

_SIDES = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


# -- the search ----------------------------------------------------------------------------
def stitch_segment(
    grid: TileGrid,
    predict: TilePredictor,
    prompt: Prompt,
    *,
    z: int = 0,
    multimask: bool | None = None,
    max_tiles: int = 16,
    margin: int = 4,
    ready: Callable[[int, int], bool] | None = None,
) -> SegmentResult:
    """Segment one object over as many tiles as it spans (see the module docstring); only
    over tiles `ready` accepts, if given.

    Examples
    --------
    >>> grid = TileGrid((300, 300), tile_size=160, halo=16)
    >>> grid.grid_shape
    (3, 3)
    >>> def predict(ty, tx, pts, labels, box, multimask):  # an object filling the image
    ...     return np.ones(grid.tile_shape(ty, tx), bool), 1.0
    >>> r = stitch_segment(grid, predict, Prompt.make([(10, 10)]))
    >>> r.area, len(r.tiles)
    (90000, 9)
    """
    seeds = seed_tiles(grid, prompt)
    search = _Search(grid, predict, prompt, multimask, margin, max_tiles, ready)
    for seed in seeds:
        search.offer(seed, np.zeros((0, 2)), None)
    while search.queue and not search.done:
        search.step()
    window, offset = merge_tiles(grid, search.masks)
    # The score of the user's own tile, in its latest prediction.
    scores = [v.score for v in search.visits if v.tile == seeds[0]]
    return SegmentResult(
        window,
        offset,
        grid.slice_shape,
        scores[-1] if scores else 0.0,
        z,
        tuple(search.visits),
        truncated=bool(search.queue),
        waiting=tuple(sorted(search.waiting)),
    )


class _Search:
    """State of the breadth-first walk over tiles: queue, prompts, latest mask per tile."""

    def __init__(self, grid, predict, prompt, multimask, margin, max_tiles, ready) -> None:
        self.grid, self.predict, self.prompt = grid, predict, prompt
        self.multimask, self.margin, self.max_tiles = multimask, margin, max_tiles
        self.ready: Callable[[int, int], bool] | None = ready  # None: every tile is
        self.queue: deque[Tile] = deque()
        self.derived: dict[Tile, list[np.ndarray]] = {}
        self.parents: dict[Tile, Tile | None] = {}
        self.masks: dict[Tile, np.ndarray] = {}
        self.counts: dict[Tile, int] = {}
        self.visits: list[TileVisit] = []
        self.waiting: set[Tile] = set()  # reached, but not ready to be predicted

    def offer(self, tile: Tile, points: np.ndarray, parent: Tile | None) -> None:
        """Queue `tile` with extra positive points; a predicted tile only for points its
        mask missed (an object leaving and re-entering it, e.g. a U), and only once again."""
        if tile in self.masks:
            ys, xs = self.grid.tile_region(*tile)
            iy, ix = (points - [ys.start, xs.start]).astype(int).T
            points = points[~self.masks[tile][iy, ix]]
            if len(points) == 0 or self.counts[tile] > MAX_REVISITS:
                return
        self.derived.setdefault(tile, []).append(points)
        self.parents.setdefault(tile, parent)
        if tile not in self.queue:
            self.queue.append(tile)

    @property
    def done(self) -> bool:
        """Whether the cap on predictions is reached."""
        return len(self.visits) >= self.max_tiles

    def step(self) -> None:
        tile = self.queue.popleft()
        if self.ready is not None and not self.ready(*tile):
            self.waiting.add(tile)
            return
        parent = self.parents[tile]
        # The user's multimask choice holds where the user's prompt is answered.
        mm = self.multimask if parent is None else None
        found = _visit(self.grid, self.predict, tile, self.prompt, self.derived[tile], parent, mm)
        if found is None:
            return
        visit, mask = found
        self.visits.append(visit)
        self.masks[tile] = mask
        self.counts[tile] = self.counts.get(tile, 0) + 1
        for other in touched_neighbours(self.grid, tile, mask, self.margin):
            if self.done and self.queue:
                # No tile is predicted after this one, and one queued says the object goes
                # on beyond the cap: the other neighbours' points (a distance transform
                # each, some milliseconds for a large object) would go unused.
                break
            points = derived_points(self.grid, tile, other, mask)
            if len(points):
                self.offer(other, points, tile)


def seed_tiles(grid: TileGrid, prompt: Prompt) -> list[Tile]:
    """Tiles a prompt starts in: the box's tile(s), then owners of positive points not yet seen.

    Examples
    --------
    >>> grid = TileGrid((1000, 1000), tile_size=512, halo=32)
    >>> seed_tiles(grid, Prompt.make([(10, 10), (900, 900)]))
    [(0, 0), (1, 1)]
    """
    seeds: list[Tile] = []
    if prompt.box is not None:
        candidates = grid.tiles_for_box(*prompt.box)
        holding = [t for t in _near(grid, candidates) if _contains(grid, t, prompt.box)]
        if holding:
            seeds = [max(holding, key=lambda t: _inner_overlap(grid, t, prompt.box))]
        else:  # no tile sees the whole box: answer it piecewise, clipped to each tile
            seeds = list(candidates)
    for (y, x), label in zip(prompt.points, prompt.labels):
        seen = any(_covers(grid, t, y, x) for t in seeds)
        if label == 1 and not seen:
            seeds.append(grid.tile_for_point(y, x))
    return seeds


def _visit(grid, predict, tile, prompt, derived, parent, multimask):
    """Predict one tile; None when the tile gets no positive prompt."""
    ys, xs = grid.tile_region(*tile)
    own = prompt.within(ys, xs)
    extra = np.concatenate(derived) if derived else np.zeros((0, 2))
    points = np.concatenate([own.points, extra])
    labels = np.concatenate([own.labels, np.ones(len(extra), dtype=np.int64)])
    if own.box is None and not (labels == 1).any():
        return None
    if multimask is None:
        multimask = len(points) == 1 and own.box is None
    in_tile = Prompt(points, labels, own.box).shifted(*grid.tile_origin(*tile))
    mask, score = predict(*tile, in_tile.points, labels, in_tile.box, multimask)
    visit = TileVisit(tile, points, labels, own.box, multimask, float(score), parent)
    return visit, np.asarray(mask, dtype=bool)


# -- neighbours and derived prompts -----------------------------------------------------------
def touched_neighbours(grid: TileGrid, tile: Tile, mask: np.ndarray, margin: int) -> list[Tile]:
    """Neighbours whose side (or corner) the tile's mask reaches within `margin` pixels.

    Sides on the image border have no neighbour and are ignored.

    Examples
    --------
    >>> grid = TileGrid((300, 300), tile_size=160, halo=16)
    >>> mask = np.zeros((160, 160), bool); mask[50:60, 150:160] = True
    >>> touched_neighbours(grid, (0, 0), mask, margin=4)
    [(0, 1)]
    """
    ty, tx = tile
    ny, nx = grid.grid_shape
    m = max(int(margin), 1)
    out = []
    for dy, dx in _SIDES:
        # A side: the band of `m` rows/columns along it; a corner: the m x m square there.
        near = mask[_band(dy, m), _band(dx, m)]
        if 0 <= ty + dy < ny and 0 <= tx + dx < nx and near.any():
            out.append((ty + dy, tx + dx))
    return out


def _band(step: int, m: int) -> slice:
    return slice(None, m) if step < 0 else slice(-m, None) if step > 0 else slice(None)


def derived_points(grid: TileGrid, parent: Tile, child: Tile, mask: np.ndarray) -> np.ndarray:
    """Positive points ``(K, 2)`` in image coordinates for `child`, from `parent`'s mask.

    One per connected piece of the mask inside the strip that `parent` owns and `child`
    sees (or, if the mask has no pixel there, the whole overlap of the two tiles): the
    piece's deepest pixel, for the ``MAX_DERIVED_POINTS`` largest pieces.
    """
    origin = grid.tile_origin(*parent)
    cover = grid.tile_region(*child)
    for region in (grid.inner_region(*parent), grid.tile_region(*parent)):
        ys, xs = _intersect(region, cover)
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        strip = _crop(mask, origin, ys, xs)
        if strip.any():
            return _deepest_points(strip) + np.array([ys.start, xs.start], dtype=np.float64)
    if grid.halo == 0:
        return _points_across(grid, parent, child, mask)
    return np.zeros((0, 2))


def _points_across(grid: TileGrid, parent: Tile, child: Tile, mask: np.ndarray) -> np.ndarray:
    """Without a halo neighbouring tiles share no pixel: the deepest points of the parent's
    mask in a band along the side (or corner) facing `child`, moved across onto the child's
    first row or column there."""
    step = np.subtract(child, parent)
    band_width = min(_ACROSS_BAND, *mask.shape)
    rows, cols = _band(int(step[0]), band_width), _band(int(step[1]), band_width)
    band = mask[rows, cols]
    if not band.any():
        return np.zeros((0, 2))
    ys, xs = grid.tile_region(*parent)
    start = [s.indices(n)[0] for s, n in zip((rows, cols), mask.shape)]
    points = _deepest_points(band) + np.array([ys.start + start[0], xs.start + start[1]])
    cy, cx = grid.tile_region(*child)
    for axis, (d, span) in enumerate(zip(step, (cy, cx))):
        if d:
            points[:, axis] = span.start if d > 0 else span.stop - 1
    return points


def _deepest_points(strip: np.ndarray) -> np.ndarray:
    # Only the mask's bounding box: with a ring of background around it (the padding, which
    # also keeps the points away from the strip's own edges), every depth inside is the
    # same as on the whole strip, and row-major order, hence argmax's ties, is kept.
    y0, x0, y1, x1 = _tight_box(0, 0, strip)
    strip = strip[y0:y1, x0:x1]
    pieces, n = ndimage.label(strip)
    depth = ndimage.distance_transform_edt(np.pad(strip, 1))[1:-1, 1:-1]
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
    points = []
    for label in np.argsort(-sizes, kind="stable")[:MAX_DERIVED_POINTS] + 1:
        d = np.where(pieces == label, depth, -1.0)
        points.append(np.unravel_index(int(np.argmax(d)), d.shape))
    return np.asarray(points, dtype=np.float64).reshape(-1, 2) + np.array([y0, x0])


# -- stitching ---------------------------------------------------------------------------------
def merge_tiles(
    grid: TileGrid, masks: dict[Tile, np.ndarray]
) -> tuple[np.ndarray, tuple[int, int]]:
    """Stitch per-tile masks: the window around the result and its ``(y0, x0)`` offset.

    A pixel comes from its owner tile if that tile is in `masks`, else from the union of
    the tiles in `masks` that cover it.
    """
    pieces = []
    for tile, mask in masks.items():
        cover = grid.tile_region(*tile)
        origin = grid.tile_origin(*tile)
        (oy0, ox0), (oy1, ox1) = (
            grid.tile_for_point(cover[0].start, cover[1].start),
            grid.tile_for_point(cover[0].stop - 1, cover[1].stop - 1),
        )
        for owner in ((uy, ux) for uy in range(oy0, oy1 + 1) for ux in range(ox0, ox1 + 1)):
            if owner != tile and owner in masks:
                continue
            ys, xs = _intersect(grid.inner_region(*owner), cover)
            part = _crop(mask, origin, ys, xs)
            if part.any():
                pieces.append((ys.start, xs.start, part))
    return _paste(pieces)


def _paste(pieces: Sequence[tuple[int, int, np.ndarray]]) -> tuple[np.ndarray, tuple[int, int]]:
    if not pieces:
        return np.zeros((0, 0), dtype=bool), (0, 0)
    boxes = [_tight_box(y, x, p) for y, x, p in pieces]
    y0, x0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    y1, x1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    window = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for (by0, bx0, by1, bx1), (py, px, part) in zip(boxes, pieces):
        window[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] |= part[
            by0 - py : by1 - py, bx0 - px : bx1 - px
        ]
    return window, (y0, x0)


def _tight_box(y: int, x: int, part: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
    return (y + int(rows[0]), x + int(cols[0]), y + int(rows[-1]) + 1, x + int(cols[-1]) + 1)


# -- geometry helpers ------------------------------------------------------------------------
def _intersect(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice]:
    out = []
    for s, t in zip(a, b):
        start = max(s.start, t.start)
        out.append(slice(start, max(start, min(s.stop, t.stop))))
    return out[0], out[1]


def _crop(mask: np.ndarray, origin: tuple[int, int], ys: slice, xs: slice) -> np.ndarray:
    """The image region ``(ys, xs)`` of a tile's mask whose first pixel is at `origin`."""
    oy, ox = origin
    return mask[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox]


def _covers(grid: TileGrid, tile: Tile, y: float, x: float) -> bool:
    ys, xs = grid.tile_region(*tile)
    return ys.start <= y < ys.stop and xs.start <= x < xs.stop


def _contains(grid: TileGrid, tile: Tile, box: Box) -> bool:
    ys, xs = grid.tile_region(*tile)
    return ys.start <= box[0] and xs.start <= box[1] and box[2] <= ys.stop and box[3] <= xs.stop


def _inner_overlap(grid: TileGrid, tile: Tile, box: Box) -> float:
    ys, xs = grid.inner_region(*tile)
    dy = min(ys.stop, box[2]) - max(ys.start, box[0])
    dx = min(xs.stop, box[3]) - max(xs.start, box[1])
    return max(dy, 0.0) * max(dx, 0.0)


def _near(grid: TileGrid, tiles: Sequence[Tile]) -> list[Tile]:
    """`tiles` and their neighbours (a box's holding tile may only see it in its halo)."""
    ny, nx = grid.grid_shape
    ty0, tx0 = min(t[0] for t in tiles), min(t[1] for t in tiles)
    ty1, tx1 = max(t[0] for t in tiles), max(t[1] for t in tiles)
    return [
        (ty, tx)
        for ty in range(max(ty0 - 1, 0), min(ty1 + 2, ny))
        for tx in range(max(tx0 - 1, 0), min(tx1 + 2, nx))
    ]


def default_margin(tile_size: int, image_size: int) -> int:
    """About one cell of the decoder's low-res output (a quarter of the model input), in tile
    pixels: closer than that to an edge, the mask may continue past it.

    >>> default_margin(1024, 1024)
    4
    """
    return max(2, math.ceil(4 * tile_size / image_size))
