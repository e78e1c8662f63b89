"""Many objects from the features of a vector file: one object per feature (a point, a few
+ / - points, a box), or all features as the prompt of one object.

The features are prompts already placed on the raster's pixels
(:func:`tilesam.io.vectors.read_prompt_features`); each is segmented by
:meth:`tilesam.Session.segment` (whole across tile borders, nodata left out) and the objects
come back as an :class:`~tilesam.automatic.result.AutoResult`, so they are saved like
segment-everything's: labels block by block, a table, polygons carrying each feature's id.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from tilesam.automatic.masks import Instance
from tilesam.automatic.result import AutoResult, geometry
from tilesam.automatic.settings import AutoSettings
from tilesam.errors import TileSAMError, TileSAMWarning
from tilesam.io.vectors import PromptFeature, merge_features

if TYPE_CHECKING:
    from tilesam.segment.result import SegmentResult
    from tilesam.segment.session import Session


def segment_features(
    session: Session,
    features: Sequence[PromptFeature],
    *,
    one_object: bool = False,
    progress: bool = True,
) -> AutoResult:
    """Segment one object per feature (or one from all of them, `one_object`).

    Object ids follow the features' order (1, 2, ...); a feature whose prompt finds nothing
    (e.g. a point on nodata) gives no object, with one warning naming those features.
    ``result.prompt_ids`` maps each object id to its feature id.

    Examples
    --------
    >>> import numpy as np
    >>> from tilesam import Session
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")
    >>> (y, x), (y2, x2) = [np.argwhere(truth == i).mean(axis=0) for i in (1, 2)]
    >>> points = [PromptFeature((10,), points=((y, x),), labels=(1,)),
    ...           PromptFeature((11,), points=((y2, x2),), labels=(1,))]
    >>> result = segment_features(Session(image), points, progress=False)
    >>> result.n_objects, result.prompt_ids
    (2, {1: 10, 2: 11})
    """
    if not features:
        raise TileSAMError("No prompt features to segment: the file or list is empty.")
    todo = [merge_features(features)] if one_object else list(features)
    results = [
        session.segment(**feature.as_prompt())
        for feature in tqdm(todo, desc="segmenting features", disable=not progress)
    ]
    empty = [f.prompt_id for f, r in zip(todo, results) if r.area == 0]
    if empty:
        warnings.warn(
            f"No object was found for feature(s) {', '.join(map(str, empty))}: check that "
            "they lie on the objects (and not on nodata).",
            TileSAMWarning,
            stacklevel=2,
        )
    points = [f.points[0] if f.points else None for f in todo]
    return result_objects(
        session, results, mode="features", prompt_ids=[f.prompt_id for f in todo], points=points
    )


def result_objects(
    session: Session,
    results: Sequence[SegmentResult],
    *,
    mode: str,
    prompt_ids: Sequence[Any] | None = None,
    points: Sequence[tuple[float, float] | None] | None = None,
) -> AutoResult:
    """Segmentation results of one 2D image as the objects of one
    :class:`~tilesam.automatic.result.AutoResult` (its labels, table and polygons): ids 1,
    2, ... in order, an empty result giving no object; `prompt_ids` and `points` are each
    result's prompt feature id and first point."""
    objects, ids = [], {}
    for k, result in enumerate(results):
        found = Instance.from_mask(
            result.window, result.offset, z=result.z, score=result.score,
            point=points[k] if points else None, tiles=len(result.tiles), id=len(objects) + 1,
        )  # fmt: skip
        if found is None:
            continue
        objects.append(found)
        if prompt_ids is not None:
            ids[found.id] = prompt_ids[k]
    geo = geometry(session.source, volume=False)
    shape = session.grid.slice_shape
    return AutoResult(objects, shape, mode, AutoSettings(), **geo, prompt_ids=ids)
