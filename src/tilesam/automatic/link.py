"""Objects of a volume: per-slice pieces linked into 3D objects, and the ids of all.

**The linking rule.** Pieces of neighbouring slices ``z`` and ``z + 1`` are matched one to
one, by decreasing IoU of their masks, as long as the IoU is at least ``link_iou``; a
matched piece continues its partner's object, an unmatched one starts a new object. So:

- an object that **splits** (one piece on ``z``, two on ``z + 1``) continues in the piece
  that overlaps it best; the other piece starts an object of its own;
- two objects that **merge** (two pieces on ``z``, one on ``z + 1``) continue as the one
  whose piece overlaps best; the other ends there;
- an object missing from one slice is two objects (only neighbouring slices are linked).

Matching one to one keeps a piece wrongly merged on one slice (two touching nuclei as
one) from chaining two 3D objects together, which linking every overlap would.

**Ids** are ``1, 2, ...`` in the order of each object's first slice, then the top-left
corner of its first piece, so that they are reproducible and unique over the whole image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tilesam.automatic.masks import BoxIndex, Instance, iou


def link_slices(pieces: Sequence[Sequence[Instance]], link_iou: float) -> list[list[Instance]]:
    """Group the pieces of consecutive slices (one list per slice, in slice order) into
    objects: a list of pieces per object, as the linking rule above says.

    Examples
    --------
    >>> import numpy as np
    >>> box = np.ones((4, 4), bool)
    >>> z0 = [Instance(box, (0, 0), z=0)]
    >>> z1 = [Instance(box, (1, 0), z=1), Instance(box, (20, 20), z=1)]
    >>> [[p.z for p in obj] for obj in link_slices([z0, z1], link_iou=0.3)]
    [[0, 1], [1]]
    """
    objects: list[list[Instance]] = []
    previous: list[tuple[Instance, int]] = []  # (piece, its object) on the slice before
    for current in pieces:
        owners = _match([p for p, _ in previous], current, link_iou)
        now = []
        for j, piece in enumerate(current):
            if j in owners:
                k = previous[owners[j]][1]
                objects[k].append(piece)
            else:
                k = len(objects)
                objects.append([piece])
            now.append((piece, k))
        previous = now
    return objects


def _match(before: Sequence[Instance], after: Sequence[Instance], link_iou: float) -> dict:
    """``{index in after: index in before}``: one-to-one, best IoU first, IoU >= link_iou."""
    index = BoxIndex()
    for i, piece in enumerate(before):
        index.add(i, piece.bbox)
    pairs = []
    for j, piece in enumerate(after):
        for i in index.near(piece.bbox):
            score = iou(before[i], piece)
            if score >= link_iou and score > 0:
                pairs.append((score, i, j))
    matched, used = {}, set()
    for _, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2])):
        if i not in used and j not in matched:
            matched[j] = i
            used.add(i)
    return matched


def number_objects(objects: Sequence[Sequence[Instance]]) -> list[Instance]:
    """Every piece with its object's id, ``1, 2, ...`` by first slice then top-left corner.

    >>> import numpy as np
    >>> a, b = Instance(np.ones((2, 2), bool), (5, 5)), Instance(np.ones((2, 2), bool), (0, 9))
    >>> [(p.offset, p.id) for p in number_objects([[a], [b]])]
    [((0, 9), 1), ((5, 5), 2)]
    """
    order = sorted(objects, key=lambda obj: (obj[0].z, obj[0].offset))
    numbered = []
    for number, obj in enumerate(order, start=1):
        numbered += [replace(p, id=number) for p in obj]
    return sorted(numbered, key=lambda p: (p.id, p.z))
