"""Embedding tiles on many machines with ``dask.distributed``.

The driver creates the store and hands out groups of tiles; each worker reads its tiles
from the image itself, encodes them and writes its own chunks into the shared store
(writers of different tiles never touch the same chunk, see :mod:`tilesam.cache.store`).
Workers get the model as a :class:`ModelRecipe` (a registry name or a checkpoint path),
build it once per worker process and keep it, so no torch module travels per task.
The image travels once per worker: file-backed sources pickle as their path and are
reopened there, arrays are scattered.

Without an address a ``LocalCluster`` of worker processes on 127.0.0.1 is started (and
stopped afterwards); with ``"tcp://host:port"`` the store and the image must be on a
file system every worker sees.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tilesam.cache.canvas import tile_canvas
from tilesam.cache.embed import embed_batch_into, read_tile, tile_batches
from tilesam.cache.progress import CancelFlag, Progress, ProgressCallback
from tilesam.cache.tiling import TileGrid, TileIndex
from tilesam.errors import TileSAMError
from tilesam.io import ImageSource
from tilesam.models.registry import Architecture

if TYPE_CHECKING:
    from tilesam.models.sam_model import SamModel


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker builds the model: what ``load_model`` needs, or a state-dict file
    written by the driver plus its architecture (for models built in memory).

    Examples
    --------
    >>> ModelRecipe(name="vit_b", device="cpu").key
    "('vit_b', None, 'cpu', False, None, None, None, 'auto')"
    """

    name: str | None = None
    checkpoint: str | None = None
    device: str = "cpu"
    trust_checkpoint: bool = False
    architecture: Architecture | None = None
    label: str | None = None
    weights_hash: str | None = None
    precision: str = "auto"

    @property
    def key(self) -> str:
        arch = None if self.architecture is None else repr(self.architecture.to_dict())
        return repr(
            (
                self.name,
                self.checkpoint,
                self.device,
                self.trust_checkpoint,
                arch,
                self.label,
                self.weights_hash,
                self.precision,
            )
        )

    def build(self) -> SamModel:
        """The :class:`~tilesam.models.sam_model.SamModel` this recipe describes (a
        :class:`~tilesam.models.sam2_model.Sam2Model` for a SAM 2 architecture)."""
        if self.architecture is None:
            from tilesam.models.loading import load_model

            return load_model(
                self.name,
                self.checkpoint,
                self.device,
                trust_checkpoint=self.trust_checkpoint,
                precision=self.precision,
            )
        import torch

        from tilesam.models.registry import build_sam
        from tilesam.models.sam_model import SamModel

        if self.architecture.encoder == "hiera":
            # A SAM 2 model's parts beyond the image path (its video memory) are sized from
            # the weights, as load_model does; workers only embed, so its name is no matter.
            from tilesam.models.loading import load_model

            return load_model(
                checkpoint=self.checkpoint, device=self.device, precision=self.precision
            )
        sam = build_sam(self.architecture)
        sam.load_state_dict(torch.load(self.checkpoint, map_location="cpu", weights_only=True))
        return SamModel(
            sam,
            name=self.label or "model",
            architecture=self.architecture,
            weights_hash=self.weights_hash,
            device=self.device,
            precision=self.precision,
        )


def recipe_from_model(model: SamModel, folder: Path) -> ModelRecipe:
    """Save an in-memory model's weights into `folder` for workers to load.

    The file sits next to the cache, on the file system the workers share with it.
    """
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".tilesam-weights-{os.getpid()}-{id(model):x}.pt"
    torch.save(model.sam.state_dict(), path)
    return ModelRecipe(
        checkpoint=str(path),
        device=str(model.device),
        architecture=model.architecture,
        label=model.name,
        weights_hash=model.weights_hash,
        precision=model.precision,
    )


def embed_distributed(
    recipe: ModelRecipe,
    source: ImageSource,
    grid: TileGrid,
    store_path: str | os.PathLike[str],
    tiles: Sequence[TileIndex],
    *,
    intensity: tuple[float, float],
    batch_size: int = 4,
    workers: int | None = None,
    scheduler: Any = None,
    progress: bool = True,
    scale: float | None = None,
    callback: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
) -> int:
    """Embed `tiles` on a dask cluster into the existing store at `store_path`.

    Progress and cancel as for :func:`tilesam.cache.embed.embed_tiles`: a set `cancel`
    flag cancels the groups not yet done (the tiles written so far are kept). Workers
    claim each tile, so that other embedders of the store (another driver, a
    ``tilesam embed``) share the work; tiles they hold are waited for at the end.

    Parameters
    ----------
    scale : float, optional
        Embed at this magnification (:func:`tilesam.cache.embed.embed_scaled`); None: SAM's
        convention.
    workers : int, optional
        Worker processes of a local cluster (default: one per 4 CPU cores, at least 1).
    scheduler : str or distributed.Client, optional
        A scheduler address (``"tcp://host:port"``) or a connected client; overrides
        `workers`.

    Returns
    -------
    int
        Number of tiles computed.
    """
    from distributed import as_completed

    size = max(int(batch_size), 1)
    if not tiles:
        return 0
    store = str(Path(store_path).absolute())  # workers may run in another folder
    computed, futures = 0, []
    with _connect(workers, scheduler) as (client, threads):
        image = client.scatter(source, broadcast=True)
        task = (recipe, image, grid, store, intensity, scale, threads)

        def submit(some: Sequence[TileIndex]) -> list:
            groups = tile_batches(grid, some, size)
            return [client.submit(_embed_task, *task, group, pure=False) for group in groups]

        report = Progress(
            len(tiles), bar=progress, desc="embedding", callback=callback, cancel=cancel
        )
        try:
            with report:
                futures, waiting = submit(tiles), []
                while futures:
                    for future in as_completed(futures):
                        # re-raises a worker's error here
                        n, elsewhere, held = future.result()
                        computed += n
                        waiting += held
                        if n + elsewhere:
                            report.advance(n + elsewhere)
                        if report.cancelled:
                            break
                    if report.cancelled:
                        break
                    # Tiles another embedder of the store held: wait for them, and hand out
                    # again those it gave up.
                    free = _wait_for_others(Path(store), waiting, report)
                    futures = submit(free) if free else []
        finally:
            if futures:
                client.cancel(futures)
    return computed


def _wait_for_others(store_path: Path, waiting: list[TileIndex], report: Progress) -> list:
    """Wait until the tiles other embedders hold are done (counted in `report`) or free
    again (returned, and removed from `waiting`: their owners stopped without them)."""
    from tilesam.cache.store import EmbeddingStore

    store = EmbeddingStore.open(store_path, mode="r")
    claims = store.claims()
    while waiting and not report.cancelled:
        free, still = [], []
        for tile in waiting:
            if store.is_done(*tile):
                report.advance(1)
            elif claims.claim(tile):  # a probe: the worker claims it again
                claims.release(tile, finished=False)
                free.append(tile)
            else:
                still.append(tile)
        waiting[:] = still
        if free:
            return free
        if still:
            time.sleep(0.1)
    return []


class _connect:
    """Context: ``(client, torch threads per worker)``; starts and stops a local cluster."""

    def __init__(self, workers: int | None, scheduler: Any) -> None:
        self.workers, self.scheduler = workers, scheduler
        self.owned: list[Any] = []

    def __enter__(self):
        from distributed import Client, LocalCluster

        if self.scheduler is not None and not isinstance(self.scheduler, str | os.PathLike):
            return self.scheduler, None  # a client the caller owns
        if self.scheduler is not None:
            client = Client(str(self.scheduler))
            self.owned.append(client)
            return client, None
        n = self.workers or max(1, (os.cpu_count() or 1) // 4)
        if n < 1:
            raise TileSAMError(f"workers must be a positive number, got {self.workers}.")
        # Loopback only: nothing outside this machine can reach the workers.
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
        self.owned += [client, cluster]
        return client, local_worker_threads(n)

    def __exit__(self, *exc: object) -> None:
        for thing in self.owned:
            thing.close()


def local_worker_threads(n_workers: int) -> int:
    """Torch threads per process of a local cluster: the cores, shared.

    n processes with all cores each would oversubscribe the CPU; dask's own default for
    a worker process is one thread.
    """
    return max(1, (os.cpu_count() or 1) // n_workers)


def _embed_task(recipe, source, grid, store_path, intensity, scale, threads, tiles):
    """On a worker: read, encode and store one group of tiles, each claimed first (see
    :mod:`tilesam.cache.claims`). Returns how many it computed, how many it found done
    by another embedder, and the tiles another embedder holds."""
    from tilesam.models.loading import cached_model

    if threads:
        import torch

        torch.set_num_threads(threads)
    model = cached_model(("recipe", recipe.key), recipe.build)
    from tilesam.cache.store import EmbeddingStore

    # Opened per task (a few ms): a store recreated at the same path is never served stale.
    store = EmbeddingStore.open(store_path)
    claims = store.claims()
    mine, held, elsewhere = [], [], 0
    try:
        for tile in tiles:
            if not claims.claim(tile):
                held.append(tile)
            elif store.is_done(*tile):
                claims.release(tile, finished=False)
                elsewhere += 1
            else:
                mine.append(tile)
        if mine:
            pixels = [read_tile(source, grid, t) for t in mine]
            canvas = tile_canvas(model, grid)
            embed_batch_into(model, store, mine, pixels, intensity, scale, canvas)
            for tile in mine:
                claims.release(tile, finished=True)
    finally:
        claims.release_all()
    return len(mine), elsewhere, held
