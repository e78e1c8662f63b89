"""Objects cut by tile borders: the pieces neighbouring tiles found, merged into one object.

Every tile decodes the grid points it owns, with its halo of context around them, so an
object that crosses a border is found from each side: a piece per tile, each cut at most
by its own tile's edge. Two pieces of neighbouring tiles (sides and corners) are the same
object when they agree where both tiles see the image: their IoU inside the overlap of the
two tiles is at least ``merge_iou``. Pieces that agree are merged transitively (an object
over many tiles), and the merged mask takes each pixel from the tile that owns it, or, where
that tile has no piece, from the union of the others
(:func:`tilesam.segment.stitch.merge_tiles`, the rule interactive stitching follows).

No decoder call is needed: this costs a few mask comparisons per object. The alternative,
following each kept mask into the neighbouring tile with prompts derived from it
(``borders="follow"``, what :meth:`tilesam.Session.segment` does for a click), measured
worse with ``tiny`` (``docs/automatic.md``): clicks derived near a tile's edge often give a
poor mask there, and that tile's pixels come from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tilesam.automatic.masks import BoxIndex, Instance, connected_groups
from tilesam.cache.tiling import TileGrid
from tilesam.segment.stitch import merge_tiles

Tile = tuple[int, int]


def merge_pieces(
    grid: TileGrid, pieces: Sequence[tuple[Tile, Instance]], merge_iou: float
) -> list[Instance]:
    """One object per group of agreeing pieces (see the module docstring); `pieces` are
    ``(tile, piece)`` of one slice, in image coordinates.

    Examples
    --------
    >>> grid = TileGrid((100, 60), tile_size=60, halo=10)  # two tiles, sharing rows 40..60
    >>> disc = np.zeros((100, 60), bool); disc[30:70, 10:50] = True  # crosses the border
    >>> top = Instance.from_mask(disc[:60], (0, 0)); bottom = Instance.from_mask(disc[40:], (40, 0))
    >>> [(o.bbox, o.tiles) for o in merge_pieces(grid, [((0, 0), top), ((1, 0), bottom)], 0.5)]
    [((30, 10, 70, 50), 2)]
    """
    groups = connected_groups(len(pieces), _agreeing_pairs(grid, pieces, merge_iou))
    return [_merged(grid, [pieces[i] for i in members]) for members in groups]


def _agreeing_pairs(
    grid: TileGrid, pieces: Sequence[tuple[Tile, Instance]], merge_iou: float
) -> list[tuple[int, int]]:
    index = BoxIndex()
    pairs = []
    for j, (tile, piece) in enumerate(pieces):
        for i in index.near(piece.bbox):
            other, earlier = pieces[i]
            if other != tile and max(abs(a - b) for a, b in zip(other, tile)) == 1:
                if _shared_iou(grid, tile, piece, other, earlier) >= merge_iou:
                    pairs.append((i, j))
        index.add(j, piece.bbox)
    return pairs


def _shared_iou(grid: TileGrid, t: Tile, a: Instance, u: Tile, b: Instance) -> float:
    """IoU of two pieces inside the region both their tiles cover."""
    (ys, xs), (vs, ws) = grid.tile_region(*t), grid.tile_region(*u)
    region = (max(ys.start, vs.start), max(xs.start, ws.start))
    region += (min(ys.stop, vs.stop), min(xs.stop, ws.stop))
    if region[2] <= region[0] or region[3] <= region[1]:
        return 0.0
    ma, mb = a.crop(region), b.crop(region)
    union = np.count_nonzero(ma | mb)
    return np.count_nonzero(ma & mb) / union if union else 0.0


def _merged(grid: TileGrid, members: list[tuple[Tile, Instance]]) -> Instance:
    """The object of agreeing pieces: each pixel from its owner tile's pieces."""
    if len(members) == 1:
        return members[0][1]
    masks: dict[Tile, np.ndarray] = {}
    for tile, piece in members:
        ys, xs = grid.tile_region(*tile)
        mask = piece.crop((ys.start, xs.start, ys.stop, xs.stop))
        masks[tile] = masks[tile] | mask if tile in masks else mask
    window, offset = merge_tiles(grid, masks)
    best = max((p for _, p in members), key=lambda p: (p.score, p.stability))
    merged = best.with_mask(window, offset) or best
    return Instance(
        merged.window,
        merged.offset,
        best.z,
        best.score,
        best.stability,
        best.point,
        tiles=len(masks),
    )
