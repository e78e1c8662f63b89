"""The batch-of-objects operations: duplicates, overlaps, holes and specks, pieces joined
across tile borders, and slices linked into 3D objects (splits, merges, gaps)."""

from __future__ import annotations

import numpy as np

from tilesam.automatic.borders import merge_pieces
from tilesam.automatic.link import link_slices, number_objects
from tilesam.automatic.masks import (
    Instance,
    clean,
    fill_holes,
    iou,
    non_max_suppression,
    resolve_overlaps,
)
from tilesam.cache.tiling import TileGrid


def disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def obj(mask, origin=(0, 0), **fields) -> Instance:
    return Instance.from_mask(mask, origin, **fields)


def test_windows_keep_the_mask_and_its_place() -> None:
    mask = disc((100, 120), (40, 70), 10)
    o = obj(mask, (1000, 2000), score=0.8)
    assert o.bbox == (1030, 2060, 1051, 2081) and o.area == mask.sum()
    assert np.array_equal(o.crop((1000, 2000, 1100, 2120)), mask)
    assert not o.crop((0, 0, 10, 10)).any()
    assert Instance.from_mask(np.zeros((5, 5), bool)) is None


def test_nms_keeps_the_best_ranked_of_duplicates_in_any_order() -> None:
    a = obj(disc((200, 200), (50, 50), 20), score=0.9, stability=0.9)
    a2 = obj(disc((200, 200), (52, 50), 20), score=0.8, stability=0.9)
    b = obj(disc((200, 200), (150, 150), 20), score=0.5, stability=0.9)
    for order in ([a, a2, b], [b, a2, a]):
        kept = non_max_suppression(order, 0.5)
        assert [o.score for o in kept] == [0.9, 0.5]
    assert iou(a, a2) > 0.8 and iou(a, b) == 0.0


def test_overlaps_go_to_the_first_and_objects_stay_disjoint() -> None:
    a = obj(disc((100, 100), (50, 40), 15))
    b = obj(disc((100, 100), (50, 60), 15))
    first, second = resolve_overlaps([a, b])
    assert first.area == a.area and second.area < b.area
    assert not (first.crop((0, 0, 100, 100)) & second.crop((0, 0, 100, 100))).any()


def test_clean_keeps_one_piece_fills_small_holes_and_drops_specks() -> None:
    mask = disc((60, 60), (30, 30), 12)
    mask[30, 30] = False  # a one-pixel hole
    mask[2:4, 2:4] = True  # a speck beside the object
    cleaned = clean(obj(mask), min_size=20, max_hole=4)
    assert cleaned.bbox == (18, 18, 43, 43) and cleaned.crop((30, 30, 31, 31)).all()
    assert clean(obj(disc((20, 20), (10, 10), 2)), min_size=20, max_hole=0) is None
    ring = disc((40, 40), (20, 20), 15) & ~disc((40, 40), (20, 20), 8)
    assert not fill_holes(ring, max_hole=100)[20, 20]  # a hole larger than allowed stays
    assert fill_holes(ring, max_hole=300)[20, 20]


def test_pieces_of_an_object_cut_by_borders_and_corners_become_one() -> None:
    grid = TileGrid((300, 300), tile_size=160, halo=16)  # owned regions meet at 144
    image = np.zeros((300, 300), bool)
    whole = disc((300, 300), (144, 144), 40)  # on the corner of four tiles
    other = disc((300, 300), (60, 60), 20)  # inside tile (0, 0) only
    pieces = []
    for tile in grid:
        ys, xs = grid.tile_region(*tile)
        for mask in (whole, other):
            seen = np.zeros_like(image)
            seen[ys, xs] = mask[ys, xs]
            if seen.any():
                pieces.append((tile, obj(seen, score=0.9, stability=0.9)))
    merged = merge_pieces(grid, pieces, merge_iou=0.5)
    assert sorted(o.tiles for o in merged) == [1, 4]
    big = max(merged, key=lambda o: o.area)
    assert np.array_equal(big.crop((0, 0, 300, 300)), whole)


def test_pieces_that_disagree_stay_apart() -> None:
    grid = TileGrid((100, 60), tile_size=60, halo=10)  # two tiles sharing rows 40..60
    top = obj(disc((100, 60), (45, 20), 8) & (np.indices((100, 60))[0] < 60))
    bottom = obj(disc((100, 60), (50, 40), 8), (0, 0))
    assert len(merge_pieces(grid, [((0, 0), top), ((1, 0), bottom)], 0.5)) == 2


def test_slices_link_one_to_one_by_overlap_splits_merges_and_gaps() -> None:
    shape = (100, 100)
    a = obj(disc(shape, (30, 30), 10), z=0)
    big = obj(disc(shape, (70, 50), 20), z=0)
    a1 = obj(disc(shape, (31, 30), 10), z=1)  # a goes on
    left = obj(disc(shape, (70, 44), 14), z=1)  # big splits: the better half goes on
    right = obj(disc(shape, (70, 64), 8), z=1)
    a3 = obj(disc(shape, (30, 30), 10), z=3)  # slice 2 empty: a new object
    objects = link_slices([[a, big], [a1, left, right], [], [a3]], link_iou=0.2)
    assert [[p.z for p in o] for o in objects] == [[0, 1], [0, 1], [1], [3]]
    assert objects[1][1] is left
    merged = obj(disc(shape, (30, 40), 18), z=1)  # two objects merge: the better goes on
    b = obj(disc(shape, (30, 55), 8), z=0)
    objects = link_slices([[a, b], [merged]], link_iou=0.1)
    assert [[p.z for p in o] for o in objects] == [[0, 1], [0]]


def test_ids_are_unique_sequential_and_reproducible() -> None:
    shape = (50, 50)
    pieces = [[obj(disc(shape, (40, 10), 3), z=1)], [obj(disc(shape, (5, 40), 3), z=0)]]
    numbered = number_objects(pieces)
    assert [(p.id, p.z) for p in numbered] == [(1, 0), (2, 1)]
