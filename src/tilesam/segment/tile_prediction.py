"""A prompt answered by a session's tiles: each tile's prediction, stitched into one object.

:func:`tilesam.segment.stitch.stitch_segment` follows an object from tile to tile through
a ``predict`` callable; :func:`segment_tiles` gives it one that embeds each tile on demand
(``embedding(z, ty, tx)``) and asks the session's predictor, keeping every tile's
:class:`~tilesam.decode.predictor.Prediction` (its logits feed slice-to-slice
propagation). :func:`tile_candidates` gives the alternatives of the one tile holding a
prompt.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tilesam.cache.tiling import TileGrid
from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.predictor import MaskPredictor, Prediction
from tilesam.decode.prompt import Prompt
from tilesam.segment.result import SegmentResult
from tilesam.segment.stitch import merge_tiles, stitch_segment

EmbeddingOf = Callable[[int, int, int], ImageEmbedding]  # (z, ty, tx) -> the tile's


def segment_tiles(
    grid: TileGrid,
    embedding: EmbeddingOf,
    predictor: MaskPredictor,
    prompt: Prompt,
    *,
    z: int,
    multimask: bool | None,
    max_tiles: int,
    tight_box: bool,
    margin: int,
    embedded: Callable[[int, int, int], bool] | None = None,
) -> tuple[SegmentResult, dict[tuple[int, int], Prediction]]:
    """The stitched result of `prompt` on slice `z` and each tile's :class:`Prediction`
    (their logits are only upscaled where asked for); the prompt's mask, if any, maps a
    tile ``(ty, tx)`` to the decoder's mask prompt there. With `embedded` (whether tile
    ``(z, ty, tx)`` is embedded) no tile is embedded: the object stops at those that are
    not, listed in the result's ``waiting``."""
    inputs = prompt.mask or {}
    predictions: dict[tuple[int, int], Prediction] = {}

    def predict(ty, tx, pts, labs, tile_box, mm):
        tile_prompt = Prompt(pts, labs, tile_box, inputs.get((ty, tx)))
        emb = embedding(z, ty, tx)
        options = {"tight_box": tight_box}
        pred = predictor.predict_prompt(emb, tile_prompt, mm, **options)
        predictions[(ty, tx)] = pred
        return pred.mask(pred.best), float(pred.scores[pred.best])

    ready = None if embedded is None else lambda ty, tx: embedded(z, ty, tx)
    options = {"multimask": multimask, "max_tiles": max_tiles, "margin": margin}
    result = stitch_segment(grid, predict, prompt, z=z, ready=ready, **options)
    return result, predictions


def tile_candidates(
    grid: TileGrid, embedding: EmbeddingOf, predictor: MaskPredictor, prompt: Prompt, z: int
) -> list[SegmentResult]:
    """The predictor's alternative masks for `prompt` in the tile that holds it (the box's
    centre, else the first positive point), best first, in image coordinates of slice
    `z`."""
    tile = grid.tile_for_point(*prompt.anchor)
    in_tile = prompt.within(*grid.tile_region(*tile))
    in_tile = in_tile.shifted(*grid.tile_origin(*tile))
    pred = predictor.predict_prompt(embedding(z, *tile), in_tile, multimask=True)
    out = []
    for index in np.argsort(-pred.scores):
        window, offset = merge_tiles(grid, {tile: pred.mask(int(index))})
        score = float(pred.scores[index])
        out.append(SegmentResult(window, offset, grid.slice_shape, score, z))
    return out
