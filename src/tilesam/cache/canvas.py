"""SAM 2's tiles on one canvas: every tile of an image at the same magnification.

SAM 2.1 resizes its input to the square model input without keeping the aspect ratio (as
the official ``SAM2ImagePredictor`` does). A tiled image's full tiles are all of one size,
so each is magnified alike; but an edge tile is smaller (the image's last 312 pixels of a
3000-pixel side, with 1024-pixel tiles and a 64-pixel halo) and stretched alone it would
be magnified 3.3 times more across than along. So each tile is padded at its bottom and
right, after intensity normalisation, with the low end of the range (as
:func:`tilesam.cache.embed.embed_scaled` pads), to the **canvas**: the full tile, clipped to
the image (``grid.tile_shape(0, 0)``). Every tile of the image is then embedded at one
magnification, and an image no larger than a tile is its own canvas, stretched exactly as
:meth:`tilesam.models.sam2_model.Sam2Model.embed` stretches it. The tile's embedding says
how much of the model input it covers (``input_size``), as SAM's padded inputs do, and its
masks are cut out of the padded input's (:class:`~tilesam.models.sam2_model.Sam2Prediction`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tilesam.decode.embedding import ImageEmbedding
from tilesam.models.preprocess import normalize_intensity

if TYPE_CHECKING:
    from tilesam.cache.tiling import TileGrid
    from tilesam.models.sam_model import SamModel

#: Image encoders whose model resizes its input to the square without keeping the aspect
#: ratio (SAM 2's Hiera): their tiles are embedded on a canvas, and caches say so.
SQUARE_RESIZE = frozenset({"hiera"})


def tile_canvas(model: SamModel, grid: TileGrid) -> tuple[int, int] | None:
    """The canvas ``(h, w)`` every tile of `grid` is padded to for `model`; None for a
    model that keeps the aspect ratio itself (SAM's: longest side, then padding)."""
    if model.card.encoder not in SQUARE_RESIZE:
        return None
    return grid.tile_shape(0, 0)


def canvas_input_size(
    shape: tuple[int, int], canvas: tuple[int, int], side: int
) -> tuple[int, int]:
    """The extent a tile of `shape` covers in the square model input of `side` pixels when
    its `canvas` is resized to it.

    >>> canvas_input_size((312, 1024), (1024, 1024), 1024), canvas_input_size((9, 9), (9, 9), 8)
    ((312, 1024), (8, 8))
    """
    return tuple(int(n * side / c + 0.5) for n, c in zip(shape, canvas))


def embed_on_canvas(
    model: SamModel,
    tiles: Sequence[np.ndarray],
    *,
    intensity: tuple[float, float],
    canvas: tuple[int, int],
) -> list[ImageEmbedding]:
    """Embed equally sized `tiles`, each padded to `canvas` first (see the module
    docstring); a tile of the canvas' size is embedded as it is."""
    shape = tuple(np.shape(tiles[0])[:2])
    if shape == tuple(canvas):
        return model.embed_batch(tiles, intensity=intensity, batch_size=len(tiles))
    padded = []
    for tile in tiles:
        scaled = normalize_intensity(tile, intensity)
        pad = [(0, canvas[0] - shape[0]), (0, canvas[1] - shape[1])]
        padded.append(np.pad(scaled, pad + [(0, 0)] * (scaled.ndim - 2)))
    # Already on the 0..255 scale: the range (0, 255) leaves the canvases as they are.
    embedded = model.embed_batch(padded, intensity=(0.0, 255.0), batch_size=len(padded))
    size = canvas_input_size(shape, canvas, model.image_size)
    return [dataclasses.replace(e, original_size=shape, input_size=size) for e in embedded]
