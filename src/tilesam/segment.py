"""One-call segmentation of one object in an image from point and/or box prompts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.model import SamModel


@dataclass(frozen=True)
class SegmentResult:
    """The chosen mask ``(H, W)`` bool and its predicted IoU."""

    mask: np.ndarray
    score: float


def segment_image(
    image,
    *,
    model: SamModel,
    points=None,
    labels=None,
    box=None,
) -> SegmentResult:
    """Segment one object of a 2D image given as a path, an array or an ``ImageSource``.

    Points are ``(y, x)``, labels 1 / 0, the box ``(y0, x0, y1, x1)``; one point alone asks
    for the model's best of three candidate masks.

    Examples
    --------
    >>> model = load_model()  # doctest: +SKIP
    >>> result = segment_image("nuclei.tif", model=model, points=[(120, 80)])  # doctest: +SKIP
    """
    from tilesam.io import open_image

    source = open_image(image)
    if source.n_slices != 1:
        raise TileSAMError(
            f"{source.describe()} is a volume of {source.n_slices} slices: segment one slice "
            "(e.g. pass image[z]) or use the 3D propagation."
        )
    pixels = source.read_slice(0)
    embedding = model.embed(pixels)
    n_points = 0 if points is None else len(points)
    result = model.predict(
        embedding, points=points, labels=labels, box=box, multimask=n_points == 1 and box is None
    )
    return SegmentResult(mask=result.mask(), score=float(result.scores[result.best]))
