"""Embedding the tiles of an image into a store, tile by tile, with bounded memory.

`embed_tiles` streams tiles: a background thread reads the next tiles (file I/O and
decompression release the GIL) while the encoder works on the current batch, so reading
overlaps compute; at most ``2 * batch_size`` tiles wait in memory. Each batch is written
as soon as it is done, so an interrupted run loses at most one batch and resumes from
the store's ``missing_tiles``.

`embed_scaled` embeds tiles at a fixed magnification (model pixels per image pixel) instead
of SAM's convention of enlarging every tile until its longest side fills the model input:
small volume slices (a 160-pixel CT slice becomes 6.4 times larger) otherwise show objects
far larger than a model trained on crops has seen.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from tilesam.cache.canvas import canvas_input_size, embed_on_canvas, tile_canvas
from tilesam.cache.memory import TileStore
from tilesam.cache.progress import CancelFlag, Progress, ProgressCallback
from tilesam.cache.tiling import TileGrid, TileIndex
from tilesam.decode.embedding import ImageEmbedding
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource
from tilesam.models.preprocess import normalize_intensity, resized_shape

if TYPE_CHECKING:
    from tilesam.models.sam_model import SamModel

T = TypeVar("T")


# -- reading and embedding --------------------------------------------------------------------
@dataclass(frozen=True)
class EmptyTile:
    """A tile none of whose pixels holds data (a raster's nodata): it is never embedded,
    its embedding is zeros, and masks leave its pixels out anyway."""

    shape: tuple[int, int]


def read_tile(source: ImageSource, grid: TileGrid, tile: TileIndex) -> np.ndarray | EmptyTile:
    """The pixels of tile ``(z, ty, tx)``, ``(h, w)`` or ``(h, w, C)``, or an `EmptyTile`."""
    z, ty, tx = tile
    region = grid.tile_region(ty, tx)
    valid = source.valid(z, region)
    if valid is not None and not valid.any():
        return EmptyTile(valid.shape)
    return source.read_slice(z, region)


#: Encoders with more parameters than this embed one tile at a time by default.
LARGE_ENCODER_PARAMETERS = 20_000_000


def default_batch_size(model: Any) -> int:
    """Tiles per encoder call when none is asked for: 4 for small encoders (``tiny``,
    MobileSAM), 1 for ViT-B and larger (SAM, SAM 2.1 Hiera).

    A batch of 4 ViT-B inputs holds about 5 GB more activations than one, and on a CPU it
    is not faster (16 x 512² slices, one thread: 82 s against 55 s, peak 7.4 against 2.5 GB).

    >>> import tilesam
    >>> default_batch_size(tilesam.load_model("tiny"))
    4
    """
    encoder = model.sam.image_encoder
    size = sum(p.numel() for p in encoder.parameters())
    return 1 if size > LARGE_ENCODER_PARAMETERS else 4


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
    model: SamModel,
    store: TileStore,
    tiles: Sequence[TileIndex],
    pixels: Sequence[np.ndarray],
    intensity: tuple[float, float],
    scale: float | None = None,
    canvas: tuple[int, int] | None = None,
) -> None:
    """Encode one batch of equally sized tiles and write each embedding to `store`
    (zeros for an `EmptyTile`, which the encoder never sees), with a SAM 2 model's
    high-resolution maps where the store keeps them.

    `scale` embeds them at that magnification (:func:`embed_scaled`); None: SAM's convention,
    or for a SAM 2 model each tile padded to `canvas` (:mod:`tilesam.cache.canvas`).
    """
    todo = [(t, p) for t, p in zip(tiles, pixels) if not isinstance(p, EmptyTile)]
    images = [p for _, p in todo]
    if not images:
        embeddings = []
    elif scale is not None:
        embeddings = embed_scaled(model, images, intensity=intensity, scale=scale)
    elif canvas is not None:
        embeddings = embed_on_canvas(model, images, intensity=intensity, canvas=canvas)
    else:
        embeddings = model.embed_batch(images, intensity=intensity, batch_size=len(images))
    for (tile, _), emb in zip(todo, embeddings):
        meta = {"tile_shape": emb.original_size, "input_shape": emb.input_size}
        maps = getattr(emb, "high_res_features", None)
        maps = None if maps is None else [np.asarray(m[0].cpu()) for m in maps]
        store.write_tile(*tile, emb.features[0].cpu().numpy(), meta, maps)
    for tile, empty in zip(tiles, pixels):
        if isinstance(empty, EmptyTile):
            size = _input_size(model, empty.shape, scale, canvas)
            meta = {"tile_shape": empty.shape, "input_shape": size}
            maps = [np.zeros(s, np.float32) for s in getattr(store, "high_res_shapes", ())]
            store.write_tile(*tile, np.zeros(store.embedding_shape, np.float32), meta, maps or None)


def _input_size(
    model: SamModel,
    shape: tuple[int, int],
    scale: float | None,
    canvas: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """The extent a tile of `shape` covers in the model input (see :func:`embed_scaled`
    and :mod:`tilesam.cache.canvas`)."""
    if scale is None:
        if canvas is not None:
            return canvas_input_size(shape, canvas, model.image_size)
        return resized_shape(shape, model.image_size)
    factor = model.image_size / max(round(model.image_size / scale), *shape)
    return tuple(int(n * factor + 0.5) for n in shape)


def embed_scaled(
    model: SamModel, tiles: Sequence[np.ndarray], *, intensity: tuple[float, float], scale: float
) -> list[ImageEmbedding]:
    """Embed tiles at `scale` model-input pixels per tile pixel.

    Each tile is normalised with `intensity`, padded at its bottom and right with black (the
    low end of the range, e.g. air under a CT window, the background of a fluorescence
    image) to a square canvas of ``image_size / scale`` pixels (at least the tile), and the
    canvas is resized to the model input. The embedding's sizes are the tile's and its
    resized extent, so prompts and masks map exactly as for a tile SAM pads itself.

    Examples
    --------
    >>> import tilesam
    >>> model = tilesam.load_model()  # the bundled tiny: a 1024-pixel model input
    >>> slice_160px = np.random.default_rng(0).normal(40, 50, (160, 160))  # a CT slice, HU
    >>> emb = embed_scaled(model, [slice_160px], intensity=(-160, 240), scale=1.5)
    >>> emb[0].original_size, emb[0].input_size  # 1.5 times, not 1024 / 160 = 6.4
    ((160, 160), (240, 240))
    """
    if not scale > 0:
        raise TileSAMError(f"scale must be a positive number of model pixels per pixel: {scale!r}")
    side = max(round(model.image_size / scale), *(max(np.shape(t)[:2]) for t in tiles))
    # Tiles of one batch share a shape (tile_batches), so `side` is each tile's own.
    canvases = []
    for tile in tiles:
        scaled = normalize_intensity(tile, intensity)
        pad = [(0, side - scaled.shape[0]), (0, side - scaled.shape[1])] + [(0, 0)] * (
            scaled.ndim - 2
        )
        canvases.append(np.pad(scaled, pad))
    # Already on the 0..255 scale: the range (0, 255) leaves the canvases as they are.
    embedded = model.embed_batch(canvases, intensity=(0.0, 255.0), batch_size=len(canvases))
    # `replace` keeps what else the embedding carries (SAM 2's high-resolution features).
    return [
        dataclasses.replace(
            emb,
            original_size=tuple(np.shape(tile)[:2]),
            input_size=_input_size(model, tuple(np.shape(tile)[:2]), scale),
        )
        for emb, tile in zip(embedded, tiles)
    ]


def embed_tiles(
    model: SamModel,
    source: ImageSource,
    grid: TileGrid,
    store: TileStore,
    tiles: Sequence[TileIndex],
    *,
    intensity: tuple[float, float],
    batch_size: int | None = None,
    progress: bool = True,
    desc: str = "embedding",
    scale: float | None = None,
    callback: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
) -> int:
    """Embed `tiles` into `store` in this process; returns how many were computed.

    `scale` embeds every tile at that magnification (:func:`embed_scaled`); None enlarges
    each tile until its longest side fills the model input (SAM's convention).
    `batch_size` tiles go through the encoder at once (default: :func:`default_batch_size`).
    `progress`
    shows a bar, `callback(done, total)` hears of each batch, and a set `cancel` flag stops
    the loop between batches (the tiles done so far are kept: a later run resumes).

    Embedders of one on-disk store share the work: each tile is claimed before it is read
    (:mod:`tilesam.cache.claims`); a tile that another embedder holds is skipped and waited
    for at the end, and computed here if its owner stops without finishing it. Tiles
    finished by others count in the progress, not in the number returned.

    Examples
    --------
    >>> import tilesam
    >>> from tilesam.cache.memory import MemoryStore
    >>> from tilesam.io import open_image
    >>> model = tilesam.load_model()
    >>> source = open_image(np.random.default_rng(0).integers(0, 255, (300, 300), np.uint8))
    >>> grid = TileGrid(source.slice_shape, tile_size=256, halo=16)
    >>> store = MemoryStore((1, *grid.grid_shape), (256, 64, 64))
    >>> embed_tiles(model, source, grid, store, store.missing_tiles(), intensity=(0, 255),
    ...             progress=False)
    4
    >>> store.missing_tiles()
    []
    """
    size = max(int(batch_size or default_batch_size(model)), 1)
    load = lambda batch: [read_tile(source, grid, t) for t in batch]  # noqa: E731
    report = Progress(len(tiles), bar=progress, desc=desc, callback=callback, cancel=cancel)
    work = _SharedWork(store, grid, size)
    canvas = tile_canvas(model, grid)
    computed = 0
    with report:
        try:
            pending = list(tiles)
            while pending and not report.cancelled:
                # Two batches read ahead: enough to hide reading behind compute, and bounded.
                for batch, pixels in prefetch(work.batches(pending), load, depth=2):
                    if report.cancelled:
                        break
                    embed_batch_into(model, store, batch, pixels, intensity, scale, canvas)
                    work.finished(batch)
                    computed += len(batch)
                    report.advance(len(batch) + work.take_done_elsewhere())
                if elsewhere := work.take_done_elsewhere():
                    report.advance(elsewhere)
                pending = work.wait_for_others(report)
        finally:
            work.release_all()
    return computed


class _SharedWork:
    """Tiles claimed in the store before they are read, so that concurrent embedders of
    one store share them; a store without claims (`MemoryStore`) is this process's alone."""

    POLL = 0.1  # seconds between looks at the tiles that others compute

    def __init__(self, store: TileStore, grid: TileGrid, size: int) -> None:
        self.store, self.grid, self.size = store, grid, size
        claims = getattr(store, "claims", None)  # this embedder's own (None: in memory)
        self.claims = None if claims is None else claims()
        self.waiting: list[TileIndex] = []  # held by other embedders
        self._done_elsewhere = 0
        self._lock = threading.Lock()

    def batches(self, tiles: Iterable[TileIndex]) -> Iterator[list[TileIndex]]:
        """Consecutive runs of up to `size` claimed tiles of one shape, claimed as the
        prefetch thread asks for them; the others are set aside."""
        batch: list[TileIndex] = []
        for tile in tiles:
            if not self._take(tile):
                continue
            if batch and (
                len(batch) >= self.size
                or self.grid.tile_shape(*tile[1:]) != self.grid.tile_shape(*batch[-1][1:])
            ):
                yield batch
                batch = []
            batch.append(tile)
        if batch:
            yield batch

    def _take(self, tile: TileIndex) -> bool:
        if self.claims is None:
            return True
        if not self.claims.claim(tile):
            self.waiting.append(tile)
            return False
        if self.store.is_done(*tile):  # finished by another embedder meanwhile
            # Its claim file may be one this claim just created after the finisher removed
            # its own: the tile is done, so the file goes too.
            self.claims.release(tile, finished=True)
            with self._lock:
                self._done_elsewhere += 1
            return False
        return True

    def finished(self, batch: Sequence[TileIndex]) -> None:
        if self.claims is not None:
            for tile in batch:
                self.claims.release(tile, finished=True)

    def take_done_elsewhere(self) -> int:
        """Tiles found finished by others since the last call."""
        with self._lock:
            n, self._done_elsewhere = self._done_elsewhere, 0
        return n

    def wait_for_others(self, report: Progress) -> list[TileIndex]:
        """Wait until each tile held by another embedder is done (counted in `report`) or
        free again (returned, claimed: its owner stopped without it); [] when cancelled."""
        while self.waiting and not report.cancelled:
            free, still = [], []
            for tile in self.waiting:
                if self.store.is_done(*tile):
                    report.advance(1)
                elif self.claims is not None and self.claims.claim(tile):
                    free.append(tile)
                else:
                    still.append(tile)
            self.waiting = still
            if free:
                return free
            if still:
                time.sleep(self.POLL)
        return []

    def release_all(self) -> None:
        if self.claims is not None:
            self.claims.release_all()


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
