"""`propagate_mask`: segment objects through a volume from a few clicks, a box or a mask.

The user's prompt is answered on its slice(s) with a :class:`tilesam.Session` (tiled, cached
embeddings; a slice larger than the model input is tiled and objects crossing tiles are
stitched), then :func:`tilesam.volumes.walk.propagate_labels` carries every object slice by
slice, asking the same session for each slice (its embeddings are computed on demand and
kept in the cache, so a second run costs only the decoder). The algorithm, its stop rules
and thresholds are documented in :mod:`tilesam.volumes.walk`.

Slices are embedded at most ``slice_scale`` times enlarged (:class:`tilesam.Session`'s
`slice_scale`, default :data:`tilesam.cache.scale.DEFAULT_SLICE_SCALE`, where it is measured):
SAM's convention enlarges a slice until it fills the model input, which shows small slices'
objects far larger than a model trained on crops has seen.

Coordinates are the volume's own index order ``(z, y, x)``. With ``axis=1`` or ``2`` the
volume is segmented plane by plane along that axis; points stay ``(z, y, x)``, while the box
is given in the plane: ``(s, a0, b0, a1, b1)`` with ``s`` the index along `axis` and
``(a, b)`` the two other axes in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.cache.progress import CancelFlag
from tilesam.cache.scale import DEFAULT_SLICE_SCALE
from tilesam.decode.prompt import Prompt, check_labels
from tilesam.errors import TileSAMError
from tilesam.io import AxisView, ImageSource, MedicalSource, open_image
from tilesam.io.medical import geometry_difference
from tilesam.segment.session import Session
from tilesam.volumes.memory import (
    MEMORY,
    check_memory_frames,
    check_method,
    check_single_tile,
    propagate_memory,
    resolve_method,
)
from tilesam.volumes.stop_rules import StopRules
from tilesam.volumes.walk import (
    PropagationResult,
    SlicePrediction,
    SlicePredictor,
    propagate_labels,
)

if TYPE_CHECKING:
    from tilesam.models.sam_model import SamModel

Seeds = tuple[dict[int, np.ndarray], dict[tuple[int, int], Any]]


def propagate_mask(
    volume: Any,
    model: str | os.PathLike[str] | SamModel | None = None,
    *,
    points: Any = None,
    labels: Any = None,
    box: Any = None,
    mask: Any = None,
    cache: str | os.PathLike[str] | None = None,
    axis: int = 0,
    method: str | None = None,
    slice_range: tuple[int, int] | None = None,
    largest_component: bool = False,
    window: str | tuple[float, float] | None = None,
    rules: StopRules | Mapping[str, float | None] | None = None,
    slice_scale: float | None = DEFAULT_SLICE_SCALE,
    progress: bool = False,
    callback: Callable[[int, int], Any] | None = None,
    cancel: CancelFlag | None = None,
    session: Session | None = None,
    details: bool = False,
    memory_frames: int | None = None,
    fill_gaps: bool = True,
) -> np.ndarray | PropagationResult:
    """Segment one object (points / box) or every object of a seed mask through a volume.

    Parameters
    ----------
    volume : array, path or ImageSource
        A ``(Z, Y, X)`` volume: numpy / dask array, NIfTI, MHA, NRRD, DICOM folder, TIFF, zarr.
    model : str, path or SamModel, optional
        Registry name, checkpoint file or loaded model; default: the bundled model.
    points, labels : optional
        Clicks ``(z, y, x)`` with labels 1 (object) / 0 (background); may lie on several
        slices (each such slice is an annotated slice of the object, id 1).
    box : (z, y0, x0, y1, x1), optional
        A box on slice z (end-exclusive); with points on the same slice, both are used.
    mask : array, path or ImageSource, optional
        Seed labels of the volume's shape (and geometry, for medical files): every object
        id on its annotated slices propagates, keeping its id. Not together with points/box.
    cache : path, optional
        Zarr embedding cache (created or resumed); None keeps embeddings in memory.
    axis : int
        The axis whose planes are segmented: 0 (axial / z, default), 1 or 2.
    method : {None, "memory", "prompt", "box", "points", "prompt+logits", "interpolate"}
        ``"memory"``: SAM 2.1 tracks each object with its video memory (see
        :mod:`tilesam.volumes.memory`; SAM 2.1 models only, one tile per slice).
        ``"interpolate"``: no model; the slices between each object's annotated slices are
        interpolated from its masks there (:mod:`tilesam.volumes.interpolate`; every object
        needs two annotated slices). The others: what the next slice's prompt holds (see
        :mod:`tilesam.volumes.walk`); ``"prompt"`` the box and points from the current
        slice's mask, without its logits. None (or ``"auto"``): ``"memory"`` for a SAM 2.1
        model, ``"prompt"`` for SAM.
    slice_range : (start, stop), optional
        Only these slices along `axis` (end-exclusive).
    largest_component : bool
        Keep each object's largest 3D connected component.
    window : str or (width, level), optional
        CT window for the encoder (``"lung"``, ``"soft-tissue"``, ... or HU width / level).
    rules : StopRules or mapping, optional
        When a walk stops: a :class:`tilesam.volumes.stop_rules.StopRules`, or a mapping of
        the thresholds to change (``{"min_score_ratio": 0.7, "max_growth": 4.0}``; the others
        keep their defaults, documented there with why). Thresholds out of range raise
        :class:`TileSAMError` naming the rule.
    slice_scale : float or None
        Slices are enlarged at most this many times into the model input (see
        :class:`Session`); None: SAM's convention, the longest side fills the input. Part
        of the cache signature.
    progress : bool
        Show progress bars (embedding on demand, slices).
    callback : callable, optional
        ``callback(done, total)`` after every slice, e.g. for a GUI progress bar.
    cancel : object with ``is_set()``, optional
        e.g. a ``threading.Event``; when set, :class:`tilesam.errors.Cancelled` is raised and
        nothing is returned.
    session : Session, optional
        An open session over this volume (seen along `axis`) to reuse, e.g. a GUI's; then
        `model`, `cache`, `window` and `slice_scale` are the session's.
    details : bool
        Return a :class:`~tilesam.volumes.walk.PropagationResult`: the labels and where and
        why every walk stopped (``result.stops``, each with ``.describe()``, a line that says
        which rule to change to go further). Either way, walks that stop within two slices
        of their seed raise one :class:`tilesam.errors.TileSAMWarning` saying so.
    memory_frames : int, optional
        With ``method="memory"``: the recent slices whose memory each object keeps, 1 to
        15 (default: SAM 2.1's 6, all it reads; fewer save memory and change the result).
    fill_gaps : bool
        Where the walks from two annotated slices of an object both stop before they meet,
        interpolate the slices left between them (the stops say which); False leaves them
        empty.

    Returns
    -------
    numpy.ndarray
        uint32 labels of the volume's spatial shape, 0 = background (with `details`: a
        PropagationResult holding them).

    Examples
    --------
    >>> import tempfile
    >>> from tilesam.io import write_labels
    >>> from tilesam.samples import load_sample, sample_path
    >>> ct = sample_path("ct_volume")  # a synthetic CT, 40 slices; liver, kidneys, spine
    >>> labels = propagate_mask(ct, points=[(21, 61, 50)], window="soft-tissue")  # the liver
    >>> liver, found = load_sample("ct_volume")[1] == 1, labels > 0
    >>> dice = 2 * (found & liver).sum() / (found.sum() + liver.sum())
    >>> labels.shape, bool(dice > 0.8)  # 0.89 in docs/benchmarks.md
    ((40, 160, 160), True)
    >>> out = write_labels(tempfile.mkdtemp() + "/liver.nii.gz", labels, like=open_image(ct))
    """
    rules = StopRules.of(rules)  # thresholds out of range are refused before any work
    check_method(method)
    check_memory_frames(memory_frames)
    source = _volume(volume)
    view = source if axis == 0 else AxisView(source, axis)
    if session is None:
        session = Session(
            view, model, cache, window=window, progress=progress, slice_scale=slice_scale
        )
    elif session.source.spatial_shape != view.spatial_shape:
        raise TileSAMError(
            f"The session is over {session.source.describe()}, not {view.describe()}: open the "
            "session on this volume (seen along this axis)."
        )
    method = resolve_method(method, session)
    if mask is not None:
        if points is not None or box is not None:
            raise TileSAMError(
                "Give either a seed mask or points / a box, not both: add clicked objects to "
                "the mask first, or propagate them in a separate run."
            )
        seeds: Seeds = (_seeds_from_mask(mask, source, view), {})
    elif method == MEMORY:  # the tracker answers the prompts itself
        check_single_tile(session)
        seeds = (_prompts_by_slice(view, points, labels, box), {})
    else:
        seeds = _seeds_from_prompts(session, view, points, labels, box)
    bar = _progress_bar(progress)
    # One bar for the walk: slices embedded on the way are part of it, not bars of their own.
    shown, session.progress = session.progress, False
    try:
        if method == MEMORY:
            result = propagate_memory(
                session, seeds[0], rules=rules, slice_range=slice_range,
                largest_component=largest_component, memory_frames=memory_frames,
                callback=_chain(bar, callback), cancel=cancel, image=view.read_slice,
                fill_gaps=fill_gaps,
            )  # fmt: skip
        else:
            result = _walk(session, view, seeds, method, rules, slice_range, largest_component,
                           _chain(bar, callback), cancel, fill_gaps)  # fmt: skip
    finally:
        session.progress = shown
        if bar is not None:
            bar.close()
    # Back from the view's axis order to the volume's.
    labels = np.ascontiguousarray(np.transpose(result.labels, np.argsort(view_order_of(view))))
    return PropagationResult(labels, result.stops) if details else labels


def _walk(
    session, view, seeds, method, rules, slice_range, largest_component, callback, cancel, fill
):
    """`propagate_labels` over a session (the volume seen along the walk's axis)."""
    return propagate_labels(
        view.spatial_shape,
        seeds[0],
        session_predictor(session, logits=method == "prompt+logits"),
        states=seeds[1],
        method=method,
        rules=rules,
        slice_range=slice_range,
        largest_component=largest_component,
        callback=callback,
        cancel=cancel,
        image=view.read_slice,
        fill_gaps=fill,
    )


def session_predictor(session: Session, *, logits: bool = False) -> SlicePredictor:
    """A slice predictor over a session: tiled, cached embeddings; with `logits`, each
    prediction's low-resolution logits per tile as its state (what method
    ``"prompt+logits"`` sends to the next slice; computing them costs a full upscaling).

    Examples
    --------
    >>> from tilesam.decode.prompt import Prompt
    >>> from tilesam.samples import load_sample
    >>> volume = load_sample("nuclei_volume")[0]
    >>> predict = session_predictor(Session(volume))
    >>> answer = predict(5, Prompt(box=(20, 20, 60, 60)))
    >>> answer.mask.shape == volume.shape[1:], 0 <= answer.score <= 1
    (True, True)
    """

    def predict(z: int, prompt: Prompt) -> SlicePrediction:
        # The box is the previous mask's, grown: a model's box threshold, calibrated on
        # boxes drawn tight, would fill it, and the masks would grow from slice to slice.
        options = {"z": z, "multimask": False, "tight_box": False}
        if not logits and prompt.mask is None:
            result = session.segment(prompt, **options)
            return SlicePrediction(result.mask, result.score)
        result, state = session.segment_with_logits(prompt, **options)
        return SlicePrediction(result.mask, result.score, state if logits else None)

    return predict


def view_order_of(source: ImageSource) -> tuple[int, int, int]:
    """The volume's axes in the order `source` presents them (identity unless an AxisView)."""
    return source.order if isinstance(source, AxisView) else (0, 1, 2)


# -- inputs --------------------------------------------------------------------------------
def _volume(volume: Any) -> ImageSource:
    source = open_image(volume)
    if source.spatial_ndim != 3:
        raise TileSAMError(
            f"{source.describe()} is a 2D image; propagation needs a volume (Z, Y, X). "
            "Segment a 2D image with tilesam.segment_image or Session.segment, or pass a "
            "volume (a TIFF stack, NIfTI, DICOM series...)."
        )
    if source.n_slices < 2:
        raise TileSAMError(
            f"{source.describe()} has one slice: there is nothing to propagate to. Pass the "
            "whole volume (for DICOM, the folder of the series, not one of its files)."
        )
    return source


def _seeds_from_mask(mask: Any, source: ImageSource, view: ImageSource) -> dict[int, np.ndarray]:
    seed = open_image(mask)
    if seed.spatial_shape != source.spatial_shape or seed.n_channels != 1:
        raise TileSAMError(
            f"The seed mask {seed.describe()} does not match the volume {source.describe()}: "
            "it needs the same (Z, Y, X) shape. Draw the seed on this volume, or resample it "
            "onto the volume's grid."
        )
    if isinstance(seed, MedicalSource) and isinstance(source, MedicalSource):
        difference = geometry_difference(seed, source)
        if difference is not None:
            raise TileSAMError(
                f"The seed mask's grid differs from the volume's ({difference}): it belongs "
                "to another scan or grid. Resample it onto the volume (e.g. 3D Slicer's "
                "Resample Image (BRAINS)) or draw it on this volume."
            )
    data = seed.read()
    if data.dtype.kind not in "uib":
        raise TileSAMError(f"The seed mask must hold integer labels, got {data.dtype}.")
    if data.dtype.kind == "i" and data.min() < 0:
        raise TileSAMError("The seed mask has negative labels; use 0 for background, ids > 0.")
    if data.dtype.itemsize > 4 and data.max() > np.iinfo(np.uint32).max:
        raise TileSAMError(
            f"The seed mask has an id above 2**32 - 1 ({int(data.max())}), which TileSAM's "
            "labels cannot hold: relabel its objects 1, 2, 3... (e.g. "
            "skimage.segmentation.relabel_sequential)."
        )
    data = np.transpose(data, view_order_of(view))
    annotated = np.flatnonzero(data.reshape(len(data), -1).any(axis=1))
    if annotated.size == 0:
        raise TileSAMError(
            "The seed mask is empty: draw or commit at least one object on a slice first."
        )
    return {int(z): data[z].astype(np.uint32) for z in annotated}


def _seeds_from_prompts(session: Session, view: ImageSource, points, labels, box) -> Seeds:
    """Answer the user's prompt on each slice it touches: object 1's annotated slices."""
    seeds, states = {}, {}
    for z, parts in _prompts_by_slice(view, points, labels, box).items():
        prompt = session.prompt(parts.get("points"), parts.get("labels"), parts.get("box"))
        result, logits = session.segment_with_logits(prompt, z=z)
        if result.area == 0:
            raise TileSAMError(
                f"The prompt on slice {z} gave an empty mask: click inside the object, add "
                "more positive points, or draw a box around it."
            )
        seeds[z] = result.mask.astype(np.uint32)
        states[(1, z)] = logits
    return seeds, states


def _prompts_by_slice(view: ImageSource, points, labels, box) -> dict[int, dict[str, Any]]:
    """The user's prompt split by slice: ``{z: {"points", "labels", "box"}}`` in the plane."""
    order = view_order_of(view)
    by_slice: dict[int, dict[str, Any]] = {}
    if labels is not None and np.size(labels) and (points is None or not len(points)):
        raise TileSAMError("labels were given without points: pass points=[(z, y, x), ...].")
    if points is not None and len(points):
        try:
            zyx = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            raise TileSAMError(f"points must be (z, y, x) numbers, got {points!r}.") from None
        if zyx.ndim != 2 or zyx.shape[1] != 3:
            raise TileSAMError(f"points must be (z, y, x) triples, got shape {zyx.shape}.")
        for p, lab in zip(zyx[:, order], check_labels(labels, len(zyx))):
            entry = by_slice.setdefault(_slice_index(p[0], view), {"points": [], "labels": []})
            entry["points"].append(p[1:])
            entry["labels"].append(lab)
    if box is not None:
        try:
            values = np.asarray(box, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            values = np.zeros(0)
        if values.shape != (5,) or not np.isfinite(values).all():
            raise TileSAMError(f"box must be (z, y0, x0, y1, x1), got {box!r}.")
        by_slice.setdefault(_slice_index(values[0], view), {})["box"] = values[1:]
    if not by_slice:
        raise TileSAMError(
            "Nothing to propagate: give points=[(z, y, x)], a box=(z, y0, x0, y1, x1) or a seed "
            "mask=."
        )
    return dict(sorted(by_slice.items()))


def _slice_index(value: float, view: ImageSource) -> int:
    z = int(np.floor(value))
    if not 0 <= z < view.n_slices:
        raise TileSAMError(
            f"Slice {value:g} is outside the volume's {view.n_slices} slices along this axis "
            f"(valid: 0..{view.n_slices - 1})."
        )
    return z


def _progress_bar(show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc="propagating", unit="slice")


def _chain(bar, callback: Callable[[int, int], Any] | None) -> Callable[[int, int], Any] | None:
    if bar is None:
        return callback

    def both(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if callback is not None:
            callback(done, total)

    return both
