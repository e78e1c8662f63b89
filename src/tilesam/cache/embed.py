"""Embedding the tiles of an image into a store, tile by tile, with bounded memory.

`embed_tiles` streams tiles: a background thread reads the next tiles (file I/O and
decompression release the GIL) while the encoder works on the current batch, so reading
overlaps compute; at most ``2 * batch_size`` tiles wait in memory. Each batch is written
as soon as it is done, so an interrupted run loses at most one batch and resumes from
the store's ``missing_tiles``.

`sample_intensity_range` gives the one intensity range for a whole image, from a strided
sample read band by band, never the whole image at once.

`embed_scaled` embeds tiles at a fixed magnification (model pixels per image pixel) instead
of SAM's convention of enlarging every tile until its longest side fills the model input:
small volume slices (a 160-pixel CT slice becomes 6.4 times larger) otherwise show objects
far larger than a model trained on crops has seen.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from tilesam.cache.tiling import TileGrid
from tilesam.decode.predictor import ImageEmbedding
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource
from tilesam.models.preprocess import DEFAULT_PERCENTILES, intensity_range, normalize_intensity

TileIndex = tuple[int, int, int]
T = TypeVar("T")

SAMPLE_BUDGET = 4_000_000  # pixels sampled for the intensity range
_BAND_PIXELS = 4_000_000  # pixels per band read while sampling (~8 MB of uint16)
_SAMPLE_SLICES = 16  # slices of a volume sampled for the intensity range


class TileStore(Protocol):
    """What `embed_tiles` needs of a store (`EmbeddingStore` or `MemoryStore`)."""

    grid_shape: tuple[int, ...]
    embedding_shape: tuple[int, ...]

    def write_tile(self, z: int, ty: int, tx: int, embedding: np.ndarray, meta: Any) -> None: ...
    def read_tile(self, z: int, ty: int, tx: int) -> np.ndarray: ...  # float16, as stored
    def read_meta(self, z: int, ty: int, tx: int) -> dict[str, tuple[int, int]]: ...
    def is_done(self, z: int, ty: int, tx: int) -> bool: ...
    def missing_tiles(self) -> list[TileIndex]: ...


class MemoryStore:
    """Tile embeddings kept in memory, float16 like `EmbeddingStore` so results match it.

    Examples
    --------
    >>> store = MemoryStore((1, 1, 2), (4, 2, 2))
    >>> store.write_tile(0, 0, 1, np.ones((4, 2, 2)), {"tile_shape": (9, 9), "input_shape": (8, 8)})
    >>> store.missing_tiles(), store.read_tile(0, 0, 1).dtype
    ([(0, 0, 0)], dtype('float16'))
    """

    path = None

    def __init__(self, grid_shape: Sequence[int], embedding_shape: Sequence[int]) -> None:
        self.grid_shape = tuple(int(n) for n in grid_shape)
        self.embedding_shape = tuple(int(n) for n in embedding_shape)
        self._tiles: dict[TileIndex, tuple[np.ndarray, dict[str, tuple[int, int]]]] = {}

    @property
    def n_tiles(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def n_done(self) -> int:
        return len(self._tiles)

    def write_tile(self, z: int, ty: int, tx: int, embedding: np.ndarray, meta: Any) -> None:
        meta = {k: (int(v[0]), int(v[1])) for k, v in meta.items()}
        self._tiles[(z, ty, tx)] = (np.asarray(embedding).astype(np.float16), meta)

    def read_tile(self, z: int, ty: int, tx: int) -> np.ndarray:
        return self._get(z, ty, tx)[0]

    def read_meta(self, z: int, ty: int, tx: int) -> dict[str, tuple[int, int]]:
        return dict(self._get(z, ty, tx)[1])

    def is_done(self, z: int, ty: int, tx: int) -> bool:
        return (z, ty, tx) in self._tiles

    def missing_tiles(self) -> list[TileIndex]:
        nz, ny, nx = self.grid_shape
        every = ((z, y, x) for z in range(nz) for y in range(ny) for x in range(nx))
        return [t for t in every if t not in self._tiles]

    def _get(self, z: int, ty: int, tx: int):
        try:
            return self._tiles[(z, ty, tx)]
        except KeyError:
            raise TileSAMError(f"Tile {(z, ty, tx)} has no embedding yet.") from None


# -- intensity ------------------------------------------------------------------------------
def sample_intensity_range(
    source: ImageSource,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    budget: int = SAMPLE_BUDGET,
    *,
    nonzero: bool = False,
) -> tuple[float, float]:
    """Robust ``(low, high)`` of a whole image from about `budget` evenly strided pixels.

    Reads up to 16 evenly spaced slices in bands of whole rows (a few MB each), keeping
    every ``step``-th row and column, so memory stays small for any image size; the
    percentiles (of the non-zero pixels only, with `nonzero`) are then
    :func:`tilesam.models.preprocess.intensity_range`'s.

    Examples
    --------
    >>> from tilesam.io import ArraySource
    >>> sample_intensity_range(ArraySource(np.arange(1000, dtype=np.uint16).reshape(10, 100)))
    (4.995, 994.005)
    """
    nz = source.n_slices
    zs = sorted({round(i * (nz - 1) / max(_SAMPLE_SLICES - 1, 1)) for i in range(_SAMPLE_SLICES)})
    height, width = source.slice_shape
    step = max(1, math.floor(math.sqrt(len(zs) * height * width / budget)))
    # Bands start at multiples of `step`, so the sample is one regular lattice.
    band = max(step, (_BAND_PIXELS // max(width, 1)) // step * step)
    parts = []
    for z in zs:
        for y in range(0, height, band):
            block = source.read_slice(z, (slice(y, min(y + band, height)), slice(None)))
            parts.append(np.ascontiguousarray(block[::step, ::step]).reshape(-1))
    return intensity_range(np.concatenate(parts), percentiles, nonzero=nonzero)


# -- reading and embedding --------------------------------------------------------------------
def read_tile(source: ImageSource, grid: TileGrid, tile: TileIndex) -> np.ndarray:
    """The pixels of tile ``(z, ty, tx)``, ``(h, w)`` or ``(h, w, C)``."""
    z, ty, tx = tile
    return source.read_slice(z, grid.tile_region(ty, tx))


def tile_batches(grid: TileGrid, tiles: Iterable[TileIndex], size: int) -> list[list[TileIndex]]:
    """Consecutive runs of up to `size` tiles of one shape (the encoder batches equal sizes).

    >>> grid = TileGrid((300, 200), tile_size=128, halo=0)
    >>> tile_batches(grid, [(0, 0, 0), (0, 0, 1), (0, 1, 0)], 4)
    [[(0, 0, 0)], [(0, 0, 1)], [(0, 1, 0)]]
    """
    batches: list[list[TileIndex]] = []
    shape = None
    for tile in tiles:
        this = grid.tile_shape(*tile[1:])
        if not batches or this != shape or len(batches[-1]) >= size:
            batches.append([])
        batches[-1].append(tile)
        shape = this
    return batches


def embed_batch_into(
    model, store, tiles: Sequence[TileIndex], pixels, intensity, scale: float | None = None
) -> None:
    """Encode one batch of equally sized tiles and write each embedding to `store`.

    `scale` embeds them at that magnification (:func:`embed_scaled`); None: SAM's convention.
    """
    if scale is None:
        embeddings = model.embed_batch(list(pixels), intensity=intensity, batch_size=len(pixels))
    else:
        embeddings = embed_scaled(model, list(pixels), intensity=intensity, scale=scale)
    for tile, emb in zip(tiles, embeddings):
        meta = {"tile_shape": emb.original_size, "input_shape": emb.input_size}
        store.write_tile(*tile, emb.features[0].cpu().numpy(), meta)


def embed_scaled(
    model, tiles: Sequence[np.ndarray], *, intensity: tuple[float, float], scale: float
) -> list[ImageEmbedding]:
    """Embed tiles at `scale` model-input pixels per tile pixel.

    Each tile is normalised with `intensity`, padded at its bottom and right with black (the
    low end of the range, e.g. air under a CT window, the background of a fluorescence
    image) to a square canvas of ``image_size / scale`` pixels (at least the tile), and the
    canvas is resized to the model input. The embedding's sizes are the tile's and its
    resized extent, so prompts and masks map exactly as for a tile SAM pads itself.

    Examples
    --------
    >>> emb = embed_scaled(model, [slice_160px], intensity=(-160, 240), scale=3.0)  # doctest: +SKIP
    >>> emb[0].original_size, emb[0].input_size  # doctest: +SKIP
    ((160, 160), (480, 480))
    """
    if not scale > 0:
        raise TileSAMError(f"scale must be a positive number of model pixels per pixel: {scale!r}")
    side = max(round(model.image_size / scale), *(max(np.shape(t)[:2]) for t in tiles))
    canvases = []
    for tile in tiles:
        scaled = normalize_intensity(tile, intensity)
        pad = [(0, side - scaled.shape[0]), (0, side - scaled.shape[1])] + [(0, 0)] * (
            scaled.ndim - 2
        )
        canvases.append(np.pad(scaled, pad))
    factor = model.image_size / side
    # Already on the 0..255 scale: the range (0, 255) leaves the canvases as they are.
    embedded = model.embed_batch(canvases, intensity=(0.0, 255.0), batch_size=len(canvases))
    return [
        ImageEmbedding(
            emb.features,
            original_size=tuple(np.shape(tile)[:2]),
            input_size=tuple(int(n * factor + 0.5) for n in np.shape(tile)[:2]),
        )
        for emb, tile in zip(embedded, tiles)
    ]


def embed_tiles(
    model,
    source: ImageSource,
    grid: TileGrid,
    store: TileStore,
    tiles: Sequence[TileIndex],
    *,
    intensity: tuple[float, float],
    batch_size: int = 4,
    progress: bool = True,
    desc: str = "embedding",
    scale: float | None = None,
) -> int:
    """Embed `tiles` into `store` in this process; returns how many were computed.

    `scale` embeds every tile at that magnification (:func:`embed_scaled`); None enlarges
    each tile until its longest side fills the model input (SAM's convention).

    Examples
    --------
    >>> embed_tiles(model, source, grid, store, store.missing_tiles(),  # doctest: +SKIP
    ...             intensity=(0.0, 4095.0))
    """
    from tqdm.auto import tqdm

    batches = tile_batches(grid, tiles, max(int(batch_size), 1))
    load = lambda batch: [read_tile(source, grid, t) for t in batch]  # noqa: E731
    done = 0
    with tqdm(total=len(tiles), desc=desc, unit="tile", disable=not progress) as bar:
        # Two batches read ahead: enough to hide reading behind compute, and bounded.
        for batch, pixels in prefetch(batches, load, depth=2):
            embed_batch_into(model, store, batch, pixels, intensity, scale)
            done += len(batch)
            bar.update(len(batch))
    return done


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(
    items: Iterable[T], load: Callable[[T], Any], depth: int = 2
) -> Iterator[tuple[T, Any]]:
    """Yield ``(item, load(item))`` while a background thread loads the next `depth` items.

    An error in `load` is raised in the consumer; a consumer that stops early stops the
    thread.

    >>> [v for _, v in prefetch(range(3), lambda i: i * i)]
    [0, 1, 4]
    """
    slots: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()
    end = object()

    def put(value: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((item, load(item))):
                    return
            put(end)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer to raise
            put(_Failed(exc))

    worker = threading.Thread(target=run, name="tilesam-prefetch", daemon=True)
    worker.start()
    try:
        while (value := slots.get()) is not end:
            if isinstance(value, _Failed):
                raise value.error
            yield value
    finally:
        stop.set()
        worker.join(timeout=5)
