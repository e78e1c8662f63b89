"""Grid mode: a lattice of positive points decoded from the cached embeddings, tile by tile.

One slice goes through four steps:

1. **Points.** One lattice over the whole slice, a step of the model input's side over
   ``points_per_side`` (in image pixels at the tiles' magnification), each point given to
   the tile that owns it (:meth:`TileGrid.inner_region`): no point is decoded twice, and
   every tile's points have the tile's halo of context around them. In a tile the points are
   visited coarse to fine (every 8th, then every 4th, ...), and with ``skip_covered`` a point
   inside a mask already kept there is not decoded.
2. **Masks.** Each point is a click, decoded in batches from the tile's cached embedding
   (:func:`tilesam.automatic.batch.decode_clicks`: the masks a single click gets, with the
   decoder's windows and ``keep_prompted``). Of its three candidate masks the most stable
   (:func:`stability_score`) is kept if its predicted IoU reaches ``min_score``, its
   stability ``min_stability``, it holds its own point and covers at most ``max_area`` of
   the tile. Duplicates within the tile go by non-maximum suppression, best ranked first
   (predicted IoU times stability, :func:`tilesam.automatic.masks.ranked`).
3. **Borders.** An object cut by a tile border is found from each side, a piece per tile;
   pieces that agree where their tiles overlap are merged into one object
   (``borders="merge"``, :mod:`tilesam.automatic.borders`). With ``borders="follow"`` each
   kept mask is instead followed into the neighbouring tiles as a click is
   (:func:`tilesam.segment.stitch.stitch_segment`, the seed tile's mask reused). Either
   way the same object found twice is then a duplicate for the non-maximum suppression
   across tiles.
4. **Objects.** Overlaps go to the better-scored object, each object is one connected piece
   with small holes filled, specks below ``min_size`` are dropped
   (:mod:`tilesam.automatic.masks`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from tilesam.automatic.batch import decode_clicks, reaches_edge
from tilesam.automatic.borders import merge_pieces
from tilesam.automatic.masks import (
    Instance,
    clean,
    non_max_suppression,
    ranked,
    resolve_overlaps,
)
from tilesam.automatic.settings import AutoSettings
from tilesam.cache.progress import Progress
from tilesam.cache.scale import tile_scale
from tilesam.cache.tiling import TileGrid
from tilesam.decode.isolate import keep_prompted
from tilesam.decode.logits import prompted_window
from tilesam.decode.predictor import MaskPredictor, Prediction
from tilesam.decode.prompt import Prompt
from tilesam.decode.upsample import in_cells
from tilesam.errors import Cancelled, TileSAMError
from tilesam.segment.session import Session
from tilesam.segment.stitch import default_margin, stitch_segment

Tile = tuple[int, int]
_LEVELS = 3  # coarse-to-fine: every 8th lattice point first, then every 4th, 2nd, all


def magnification(session: Session) -> float:
    """How much the tiles are enlarged into the model input (a full tile's, under SAM's
    convention): model-input pixels per image pixel.

    >>> from tilesam.samples import load_sample
    >>> magnification(Session(load_sample("nuclei")[0]))  # 256 pixels fill the input
    4.0
    """
    scale = session.slice_scale
    if scale is None:  # SAM's convention: a tile's longest side fills the model input
        grid = session.grid
        scale = tile_scale(math.inf, grid.tile_size, grid.slice_shape, session.predictor.image_size)
    return float(scale)


def grid_step(session: Session, points_per_side: int) -> float:
    """Image pixels between grid points: the model input's side over `points_per_side`, at
    the tiles' :func:`magnification`.

    >>> from tilesam.samples import load_sample
    >>> grid_step(Session(load_sample("nuclei")[0]), 16)
    16.0
    """
    return session.predictor.image_size / magnification(session) / points_per_side


def each_tile(grid: TileGrid, progress: Progress | None) -> Iterator[Tile]:
    """The tiles of `grid`, row by row, a cancel heard before each (:class:`Cancelled`:
    nothing kept) and `progress` advanced after each: how every mode walks a slice."""
    for tile in grid:
        if progress is not None and progress.cancelled:
            raise Cancelled("Segment-everything was cancelled; nothing was kept.")
        yield tile
        if progress is not None:
            progress.advance()


def lattice(grid: TileGrid, tile: Tile, step: float) -> np.ndarray:
    """The lattice points ``(y, x)`` (image pixels) that `tile` owns, coarse to fine.

    >>> grid = TileGrid((100, 100), tile_size=64, halo=8)
    >>> sum(len(lattice(grid, t, 10.0)) for t in grid)  # each point in exactly one tile
    100
    >>> lattice(grid, (0, 0), 10.0)[:3].tolist()
    [[5.0, 5.0], [5.0, 45.0], [45.0, 5.0]]
    """
    ys, xs = grid.inner_region(*tile)
    iy = np.arange(np.ceil(ys.start / step - 0.5), np.ceil(ys.stop / step - 0.5), dtype=int)
    ix = np.arange(np.ceil(xs.start / step - 0.5), np.ceil(xs.stop / step - 0.5), dtype=int)
    jy, jx = (a.ravel() for a in np.meshgrid(iy, ix, indexing="ij"))
    level = np.minimum(_coarseness(jy), _coarseness(jx))
    order = np.lexsort((jx, jy, -level))
    return np.stack([(jy[order] + 0.5) * step, (jx[order] + 0.5) * step], axis=1)


def _coarseness(index: np.ndarray) -> np.ndarray:
    """How coarse a lattice index is: k for a multiple of 2**k (at most ``_LEVELS``)."""
    level = np.zeros(index.shape, dtype=int)
    for k in range(1, _LEVELS + 1):
        level[index % (2**k) == 0] = k
    return level


def stability_score(pred: Prediction, index: int, offset: float) -> float:
    """SAM's stability score of mask `index`: the IoU of its kept part at the threshold
    + `offset` and at the threshold - `offset` (nested, so a ratio of areas), on the
    decoder's low-resolution logits (4 model-input pixels a cell) around the prompt."""
    emb, threshold = pred.embedding, pred.threshold
    cells = in_cells(pred.prompt, emb.input_size, emb.original_size)
    values, origin = prompted_window(pred.logits, index, cells, threshold - offset)
    local = cells.shifted(*origin)
    low = keep_prompted(values > threshold - offset, local, clip=False)
    high = keep_prompted(values > threshold + offset, local, clip=False)
    # Nested unless the kept parts differ (no part holds the click): then their IoU.
    union = np.count_nonzero(low | high)
    return np.count_nonzero(low & high) / union if union else 0.0


class GridSlice:
    """Grid mode over one slice of a session (see the module docstring).

    Examples
    --------
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")
    >>> found = GridSlice(Session(image), AutoSettings(points_per_side=16)).run(0)
    >>> len(found) > 10, {o.id for o in found}  # ids come later, with the labels
    (True, {0})
    """

    def __init__(self, session: Session, settings: AutoSettings) -> None:
        self.session, self.settings = session, settings
        self.grid = session.grid
        self.step = grid_step(session, settings.points_per_side)
        self.margin = default_margin(self.grid.tile_size, session.predictor.image_size)
        self.stats: Counter = Counter()
        self.decoder = _batch_decoder(session)
        self.batch_size = 32

    def run(self, z: int, progress: Progress | None = None) -> list[Instance]:
        """The objects of slice `z`, one per object, ids not yet given."""
        pieces: list[tuple[Tile, Instance]] = []
        for tile in each_tile(self.grid, progress):
            pieces += [(tile, obj) for obj in self.tile_objects(z, tile)]
        if self.settings.borders == "follow":
            return self.finish([obj for _, obj in pieces])
        start = time.perf_counter()
        found = merge_pieces(self.grid, pieces, self.settings.merge_iou)
        self.stats["seconds_borders"] += time.perf_counter() - start
        self.stats["border_objects"] += sum(obj.tiles > 1 for obj in found)
        return self.finish(found)

    def finish(self, found: list[Instance]) -> list[Instance]:
        """Duplicates across tiles dropped, overlaps resolved, specks and holes cleaned."""
        s = self.settings
        kept = non_max_suppression(found, s.nms_iou)
        kept = [c for o in kept if (c := clean(o, 0, s.max_hole)) is not None]
        kept = resolve_overlaps(ranked(kept))
        kept = [c for o in kept if (c := clean(o, s.min_size, 0)) is not None]
        self.stats["objects"] += len(kept)
        return kept

    def tile_objects(self, z: int, tile: Tile) -> list[Instance]:
        """The objects decoded from the grid points `tile` owns (duplicates dropped);
        with ``borders="follow"`` each followed across tile borders."""
        start = time.perf_counter()
        candidates, seeds = self._decode_tile(z, tile)
        kept = non_max_suppression(candidates, self.settings.nms_iou)
        self.stats["seconds_decode"] += time.perf_counter() - start
        self.stats["tiles"] += 1
        if self.settings.borders != "follow":
            return kept
        start = time.perf_counter()
        objects = [self._follow(z, tile, obj, seeds[id(obj)]) for obj in kept]
        self.stats["seconds_borders"] += time.perf_counter() - start
        return objects

    def points(self, z: int, tile: Tile) -> np.ndarray:
        """The clicks ``(y, x)`` (image pixels) `tile` decodes: its lattice points."""
        return lattice(self.grid, tile, self.step)

    def _decode_tile(self, z: int, tile: Tile) -> tuple[list[Instance], dict[int, tuple]]:
        """Candidates of the tile (image coordinates) and, per candidate, its tile mask and
        score, which the border step reuses for the seed tile."""
        emb = self.session.embedding(z, *tile)
        origin = np.array(self.grid.tile_origin(*tile), dtype=float)
        covered = np.zeros(self.grid.tile_shape(*tile), dtype=bool)
        points = self.points(z, tile) - origin
        found, seeds = [], {}
        for start in range(0, len(points), self.batch_size):
            batch = points[start : start + self.batch_size]
            if self.settings.skip_covered:
                fresh = ~covered[batch[:, 0].astype(int), batch[:, 1].astype(int)]
                self.stats["points_skipped"] += int(np.count_nonzero(~fresh))
                batch = batch[fresh]
            self.stats["points_decoded"] += len(batch)
            for point, pred in zip(batch, decode_clicks(self.decoder, emb, batch)):
                kept = self._filter(emb, point, pred)
                if kept is None:
                    continue
                mask, score, stability = kept
                covered |= mask
                fields = {"z": z, "score": score, "stability": stability}
                obj = Instance.from_mask(mask, tuple(origin.astype(int)), **fields)
                obj = replace(obj, point=tuple(float(v) for v in point + origin))
                found.append(obj)
                if self.settings.borders == "follow":  # a full tile mask: only if needed
                    seeds[id(obj)] = (mask, score)
        self.stats["candidates"] += len(found)
        return found, seeds

    def _filter(self, emb, point: np.ndarray, pred: Prediction) -> tuple | None:
        """``(mask, score, stability)`` of a click if it passes the filters: the most
        stable of its three candidate masks, with a predicted IoU of at least
        ``min_score``, a stability of at least ``min_stability``, holding the click and
        covering at most ``max_area`` of the tile.

        A click whose best mask reaches the edge of the window it was decoded on (the
        batch's) is decoded again as a single click is (next window, whole grid).
        """
        s = self.settings
        if float(pred.scores.max()) < s.min_score:
            return None  # no candidate can pass: spare the stability scores
        if reaches_edge(pred, pred.best):
            self.stats["points_redecoded"] += 1
            prompt = Prompt(point[None], np.ones(1, dtype=np.int64))
            pred = self.session.predictor.predict_prompt(emb, prompt, multimask=True)
        stabilities = [
            stability_score(pred, i, s.stability_offset) for i in range(len(pred.scores))
        ]
        index = int(np.argmax(stabilities))
        score, stability = float(pred.scores[index]), float(stabilities[index])
        if score < s.min_score or stability < s.min_stability:
            return None
        mask = pred.mask(index)
        y, x = int(point[0]), int(point[1])
        if not mask[y, x] or np.count_nonzero(mask) > s.max_area * mask.size:
            return None
        return mask, score, stability

    def _follow(self, z: int, tile: Tile, obj: Instance, seed: tuple) -> Instance:
        """`obj` followed across tile borders as a click at its point is."""
        predict = self._tile_predictor(z, tile, obj.point, seed)
        prompt = Prompt(np.array([obj.point]), np.ones(1, dtype=np.int64))
        result = stitch_segment(
            self.grid,
            predict,
            prompt,
            z=z,
            multimask=True,
            max_tiles=self.settings.max_tiles,
            margin=self.margin,
        )
        self.stats["border_objects"] += len(result.tiles) > 1
        self.stats["border_tile_predictions"] += len(result.tiles) - 1
        whole = obj.with_mask(result.window, result.offset) or obj
        return Instance(
            whole.window,
            whole.offset,
            z,
            obj.score,
            obj.stability,
            obj.point,
            tiles=len(result.tiles),
        )

    def _tile_predictor(
        self, z: int, seed_tile: Tile, point: tuple[float, float], seed: tuple
    ) -> Callable:
        """`stitch_segment`'s ``predict``: the seed tile's click is the mask already made,
        every other tile (or a revisit of the seed with more points) is decoded."""
        origin = np.array(self.grid.tile_origin(*seed_tile), dtype=float)
        first = np.asarray(point, dtype=float) - origin

        def predict(ty, tx, points, labels, box, multimask):
            if (ty, tx) == seed_tile and len(points) == 1 and np.allclose(points[0], first):
                return seed
            emb = self.session.embedding(z, ty, tx)
            pred = self.session.predictor.predict_prompt(
                emb, Prompt(points, labels, box), multimask
            )
            return pred.mask(pred.best), float(pred.scores[pred.best])

        return predict


def _batch_decoder(session: Session) -> MaskPredictor:
    """The torch model, which decodes clicks in batches, where the session can load it;
    else the session's predictor (the cache's NumPy decoder: one click at a time)."""
    try:
        return session.model
    except TileSAMError:
        return session.predictor
