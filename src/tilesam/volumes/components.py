"""Each object's largest 3D connected component: what ``largest_component=True`` keeps of
a propagation (a walk that strayed onto a look-alike leaves a piece apart from the object).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

# Largest object id whose boxes ndimage.find_objects finds in one pass (a list of that
# many entries).
_FIND_OBJECTS_MAX_ID = 2**20


def keep_largest_components(
    labels: np.ndarray, objects: list[int], annotated: Mapping[int, list[int]]
) -> None:
    """Keep each of `objects`' largest 3D connected component in `labels` (in place); the
    object's `annotated` slices are kept as they are."""
    for obj, box in _object_boxes(labels, objects).items():
        view = labels[box]
        pieces, n = ndimage.label(view == obj)
        if n < 2:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        drop = (pieces > 0) & (pieces != int(np.argmax(sizes)) + 1)
        for z in annotated.get(obj, []):  # annotations are kept as they are
            if box[0].start <= z < box[0].stop:
                drop[z - box[0].start] = False
        view[drop] = 0


def _object_boxes(labels: np.ndarray, objects: list[int]) -> dict[int, tuple[slice, ...]]:
    """The bounding box of each of `objects` present in `labels`.

    ``ndimage.find_objects`` holds one entry per id up to the largest, which an id near
    2**32 would make gigabytes: such ids are boxed one object at a time instead.
    """
    if objects and max(objects) <= _FIND_OBJECTS_MAX_ID:
        boxes = ndimage.find_objects(labels, max_label=max(objects))
        return {obj: boxes[obj - 1] for obj in objects if boxes[obj - 1] is not None}
    found = {}
    for obj in objects:
        box = ndimage.find_objects((labels == obj).view(np.uint8))
        if box:
            found[obj] = box[0]
    return found
