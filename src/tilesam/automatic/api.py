"""`segment_everything`: every object of an image or a volume, once, with no prompt.

The entry points: :func:`segment_everything` (an image path, array or source, or an open
:class:`~tilesam.Session`) and :meth:`tilesam.Session.segment_everything`, which calls
:func:`run`. A mode is a class built from ``(session, settings)`` whose ``run(z, progress)``
returns the finished objects of one slice and whose ``stats`` count its work
(:class:`tilesam.automatic.grid.GridSlice`); the ``instance`` and ``prompts`` modes will
take their place beside ``grid`` in ``_MODES``. Linking slices, ids, the table and writing
are shared by all.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from tilesam.automatic.grid import GridSlice
from tilesam.automatic.instance import InstanceSlice
from tilesam.automatic.link import link_slices, number_objects
from tilesam.automatic.masks import Instance
from tilesam.automatic.prompts import PromptsSlice
from tilesam.automatic.result import AutoResult, geometry
from tilesam.automatic.settings import AutoSettings, check_mode
from tilesam.cache.progress import CancelFlag, Progress, ProgressCallback
from tilesam.errors import Cancelled, TileSAMError
from tilesam.io import ImageSource
from tilesam.models.instance_head import bundled_head
from tilesam.segment.session import Session

_MODES = {"grid": GridSlice, "instance": InstanceSlice, "prompts": PromptsSlice}
#: the default mode for a model with an instance head (measured: docs/automatic.md)
WITH_HEAD = "instance"


def segment_everything(
    image: Any,
    model: Any = None,
    cache: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    *,
    z: int | None = None,
    tile_size: int | None = None,
    halo: int | None = None,
    progress: bool = False,
    callback: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    **settings: Any,
) -> AutoResult:
    """Segment every object of an image (or of a volume, linked into 3D objects).

    Parameters
    ----------
    image : path, array, ImageSource or Session
        What :class:`tilesam.Session` opens, or an open session (then `model`, `cache`,
        `tile_size` and `halo` are its own).
    model, cache, tile_size, halo
        As for :class:`tilesam.Session`; embeddings missing from the cache are computed
        first (with a progress bar if `progress`).
    mode : str, optional
        ``"grid"``: a grid of clicks decoded from the cached embeddings (any SAM-family
        model); ``"instance"``: the model's instance head and a seeded watershed;
        ``"prompts"``: the head's seeds clicked and decoded. Default
        (:func:`default_mode`): the best measured for a model with an instance head, else
        ``"grid"``.
    z : int, optional
        One slice of a volume (a 2D result); default: every slice, linked into 3D objects.
    progress, callback, cancel
        A progress bar; ``callback(done, total)`` hears the embedding of missing tiles,
        then each tile decoded; a set `cancel` flag stops between tiles
        (:class:`~tilesam.errors.Cancelled`, nothing kept).
    **settings
        Thresholds of :class:`~tilesam.automatic.settings.AutoSettings`
        (``points_per_side``, ``min_score``, ``min_stability``, ``min_size``, ...).

    Returns
    -------
    AutoResult
        The objects as windows; ``.labels`` (uint32, 0 background, ids unique over the
        image), ``.table`` (one row per object), ``.save(path)`` (block by block).

    Examples
    --------
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")  # 256 x 256, 65 nuclei
    >>> result = segment_everything(image)  # the bundled tiny: instance mode (it has a head)
    >>> labels = result.labels
    >>> labels.shape, labels.dtype, int(labels.max()) == result.n_objects > 40
    ((256, 256), dtype('uint32'), True)
    >>> list(result.table.columns[:4])
    ['id', 'area', 'area_physical', 'centroid_y']
    """
    if isinstance(image, Session):
        given = {"model": model, "cache": cache, "tile_size": tile_size, "halo": halo}
        if any(v is not None for v in given.values()):
            raise TileSAMError(
                f"An open Session has its own model, cache and tiling: leave out "
                f"{', '.join(k for k, v in given.items() if v is not None)}."
            )
        session = image
    else:
        options = {"tile_size": tile_size, "halo": halo, "progress": progress}
        session = Session(image, model, cache, **options)
    return run(session, mode, z=z, progress=progress, callback=callback, cancel=cancel, **settings)


def run(
    session: Session,
    mode: str | None = None,
    *,
    z: int | None = None,
    progress: bool = False,
    callback: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    **settings: Any,
) -> AutoResult:
    """:func:`segment_everything` over an open session (what
    :meth:`tilesam.Session.segment_everything` calls)."""
    options = AutoSettings.make(**settings)
    mode = check_mode(mode) if mode is not None else default_mode(session, options)
    slices = list(range(session.source.n_slices)) if z is None else [z]
    segmenter = _MODES[mode](session, options)  # a missing head is refused before any work
    # Missing embeddings first (a slice that does not exist is refused here).
    session.embed(progress=progress, slices=slices, callback=callback, cancel=cancel)
    if cancel is not None and cancel.is_set():
        raise Cancelled("Segment-everything was cancelled; nothing was kept.")
    total = len(slices) * session.grid.n_tiles
    with Progress(
        total, bar=progress, desc=f"segment everything ({mode})", callback=callback, cancel=cancel
    ) as bar:
        per_slice = [_without_nodata(segmenter.run(k, bar), session.source) for k in slices]
    volume = z is None and session.source.n_slices > 1
    objects = link_slices(per_slice, options.link_iou) if volume else [[o] for o in per_slice[0]]
    shape = (
        (session.source.n_slices, *session.grid.slice_shape) if volume else session.grid.slice_shape
    )
    return AutoResult(
        number_objects(objects),
        tuple(shape),
        mode,
        options,
        stats=dict(Counter(segmenter.stats)),
        **geometry(session.source, volume),
    )


def _without_nodata(objects: list[Instance], source: ImageSource) -> list[Instance]:
    """The objects without the pixels that hold no data (a raster's nodata), those left
    empty dropped: the decoder sees nodata as dark pixels and may find objects there."""
    if not source.has_nodata:
        return objects
    kept = []
    for obj in objects:
        y0, x0, y1, x1 = obj.bbox
        valid = source.valid(obj.z, (slice(y0, y1), slice(x0, x1)))
        found = obj if valid is None else obj.with_mask(obj.window & valid, obj.offset)
        if found is not None:
            kept.append(found)
    return kept


def default_mode(session: Session, settings: AutoSettings) -> str:
    """The mode that measures best for the session's model: :data:`WITH_HEAD` when an
    instance head is given or ships with the model, else ``"grid"`` (no training needed)."""
    if settings.instance_head is not None:
        return WITH_HEAD
    return WITH_HEAD if bundled_head(session.model) is not None else "grid"
