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
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from tilesam.automatic.masks import Instance
from tilesam.automatic.result import AutoResult, geometry
from tilesam.automatic.settings import AutoSettings
from tilesam.errors import TileSAMError, TileSAMWarning
from tilesam.io.vectors import PromptFeature, merge_features

if TYPE_CHECKING:
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
    objects, prompt_ids, empty = [], {}, []
    for feature in tqdm(todo, desc="segmenting features", disable=not progress):
        result = session.segment(**feature.as_prompt())
        found = Instance.from_mask(
            result.window, result.offset, z=result.z, score=result.score,
            point=feature.points[0] if feature.points else None, tiles=len(result.tiles),
            id=len(objects) + 1,
        )  # fmt: skip
        if found is None:
            empty.append(feature.prompt_id)
            continue
        objects.append(found)
        prompt_ids[found.id] = feature.prompt_id
    if empty:
        warnings.warn(
            f"No object was found for feature(s) {', '.join(map(str, empty))}: check that "
            "they lie on the objects (and not on nodata).",
            TileSAMWarning,
            stacklevel=2,
        )
    shape = session.grid.slice_shape
    return AutoResult(
        objects, shape, "features", AutoSettings(), **geometry(session.source, volume=False),
        prompt_ids=prompt_ids,
    )  # fmt: skip
