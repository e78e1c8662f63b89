"""Opening a `tilesam.Session` for an image layer, with the dock widget's settings.

Nothing here touches the viewer, so a session can be opened in a worker thread (loading a
model and sampling a large image's intensities take seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.models.weights import DEFAULT_MODEL

if TYPE_CHECKING:
    from napari.layers import Image

    from tilesam.io import ArraySource, ImageSource
    from tilesam.segment.session import Session
    from tilesam_napari._labels_store import Committed

#: `Settings.window` for no CT window: the encoder sees the image's own range (robust
#: percentiles, as without a window in Python and on the command line).
NO_WINDOW = "none"
#: The CT window "auto" gives an image that `looks_like_ct` (the CLI docs' advice for CT).
AUTO_CT_WINDOW = "soft-tissue"
#: Hounsfield units: air is -1000 HU, and scanners fill the corners outside the field of
#: view with -1024, -2048 or -3024; a CT's lowest value lies in this range.
CT_LOWEST = (-3100.0, -900.0)
#: ... and its values span at least this many units (air to soft tissue is 1000).
CT_SPAN = 500.0


@dataclass(frozen=True)
class Settings:
    """What a session is built from: the dock widget's fields.

    ``tile_size=None`` / ``halo=None`` take an existing cache's values, else the model's
    input size and the core's `tilesam.cache.tiling.DEFAULT_HALO`; ``axes=None`` reads the
    layer's own (YX, YXC for RGB, ZYX).

    What the encoder sees (stored in the cache's signature, as the command line's
    ``--window`` / ``--intensity``): ``window`` is a CT window, a name of
    `tilesam.models.preprocess.CT_WINDOWS` or a custom ``(width, level)`` in Hounsfield
    units, or ``"none"`` (the image's own range); ``intensity`` a fixed ``(low, high)``
    range instead. Both None is "auto": an existing cache's own normalisation, else the
    soft-tissue window for a CT-like image (`looks_like_ct`), else the image's own range.
    """

    model: str = DEFAULT_MODEL
    checkpoint: str | None = None
    device: str | None = None
    cache: str | None = None
    tile_size: int | None = None
    halo: int | None = None
    axes: str | None = None
    window: str | tuple[float, float] | None = None
    intensity: tuple[float, float] | None = None


def open_session(layer: Image, settings: Settings) -> Session:
    """A `tilesam.Session` over an image layer: opens or creates the cache (loading the
    model for a new one). Touches no viewer state, so it can run in a worker thread.

    The session is given the model's name (or checkpoint), not a loaded model: a cache made
    for those weights then answers prompts from its own decoder weights at once, and the
    model is loaded (from the core's one cache per process, `shared_model`, which every
    annotator and the core's workers share) only when a tile must be embedded. A volume's
    slices get the core's default magnification (as ``tilesam embed`` and ``tilesam
    propagate`` give them), so the plugin and the command line share a cache. The CT
    window or intensity range is `normalisation`'s."""
    from tilesam import Session

    data = layer.data[0] if layer.multiscale else layer.data  # prompts at full resolution
    source = _as_source(data, settings.axes or _layer_axes(layer), layer)
    options = normalisation(source, settings)
    # A checkpoint alone names its architecture; with a name too it would have to fit it.
    name = None if settings.checkpoint else settings.model
    return Session(
        source,
        name,
        settings.cache or None,
        checkpoint=settings.checkpoint,
        device=settings.device,
        tile_size=settings.tile_size,
        halo=settings.halo,
        **options,
    )


def normalisation(source: ImageSource, settings: Settings) -> dict[str, Any]:
    """The ``window=`` / ``intensity=`` options for `tilesam.Session` from `settings`.

    A range or a window is passed as given. "auto" (both None) passes nothing when the
    cache exists (the core then takes the cache's own normalisation, whatever made it),
    else the soft-tissue window for a CT-like image. ``"none"`` passes nothing either, so
    the core samples the image's own range; it is refused for a cache made with a window
    or a fixed range, which the core would otherwise take.
    """
    window, intensity = settings.window, settings.intensity
    if intensity is not None:
        if window is not None:
            raise TileSAMError(
                f"Give a CT window ({window!r}) or an intensity range {tuple(intensity)}, not "
                "both: both set the range the encoder sees. Set one of them to auto."
            )
        return {"intensity": tuple(intensity)}
    if window == NO_WINDOW:
        _refuse_fixed_cache(settings.cache)
        return {}
    if window is not None:
        return {"window": window}
    if _cached_normalisation(settings.cache) is not None or not looks_like_ct(source):
        return {}
    return {"window": AUTO_CT_WINDOW}


def auto_window_note(settings: Settings, normalisation: dict[str, Any]) -> str | None:
    """What to tell the user when "auto" gave the session a CT window (a CT-like image, or
    the cache's own); None otherwise."""
    if settings.window is not None or settings.intensity is not None:
        return None
    if normalisation.get("method") != "window":
        return None
    low, high = normalisation["range"]
    name = normalisation["window"]
    name = name if isinstance(name, str) else "W {:g} / L {:g}".format(*name)
    return (
        f"TileSAM: the encoder sees this image through the CT window {name} ({low:g} to "
        f"{high:g} HU); choose another under CT window."
    )


def looks_like_ct(source: ImageSource) -> bool:
    """Whether an image holds Hounsfield units: one channel of signed integers or floats
    whose lowest value lies in `CT_LOWEST` (air, or the scanner's padding) and whose values
    span at least `CT_SPAN` units (from a strided sample of the whole image).

    >>> from tilesam.io import ArraySource
    >>> ct = np.full((4, 32, 32), -1024, np.int16); ct[:, 8:24, 8:24] = 40
    >>> looks_like_ct(ArraySource(ct, axes="ZYX")), looks_like_ct(ArraySource(ct + 1024))
    (True, False)
    """
    from tilesam.cache.normalisation import sample_intensity_range

    if source.n_channels != 1 or np.dtype(source.dtype).kind not in "if":
        return False
    try:
        low, high = sample_intensity_range(source, (0.0, 100.0))
    except TileSAMError:  # constant, or no finite value: nothing to detect
        return False
    return CT_LOWEST[0] <= low <= CT_LOWEST[1] and high - low >= CT_SPAN


def _cached_normalisation(cache: str | None) -> dict[str, Any] | None:
    """The normalisation an existing cache at `cache` signs; None where there is no cache
    yet (the core's `EmbeddingStore.open_existing` decides), ``{}`` for something else (the
    core says what it is when the session opens)."""
    if not cache:
        return None
    from tilesam.cache.store import EmbeddingStore

    try:
        store = EmbeddingStore.open_existing(Path(cache).expanduser(), mode="r")
    except TileSAMError:
        return {}
    return None if store is None else dict(store.signature.get("normalisation", {}))


def _refuse_fixed_cache(cache: str | None) -> None:
    """``window="none"`` over a cache made with a CT window or a fixed range: refused."""
    known = _cached_normalisation(cache) or {}
    if known.get("method") not in ("window", "user"):
        return
    low, high = known["range"]
    made = (
        f"the CT window {known['window']!r}"
        if known["method"] == "window"
        else "a fixed intensity range"
    )
    raise TileSAMError(
        f"The cache '{cache}' was made with {made} ({low:g} to {high:g}), and the CT window "
        "is set to none (the image's own range): its embeddings do not fit. Set the CT "
        "window to auto to use the cache as it is, or choose another cache path."
    )


def _layer_axes(layer: Image) -> str:
    if layer.rgb:  # napari's ndim leaves the colour axis out
        return "ZYXC" if layer.ndim == 3 else "YXC"
    if layer.ndim == 2:
        return "YX"
    if layer.ndim == 3:
        return "ZYX"
    raise TileSAMError(
        f"Layer {layer.name!r} has {layer.ndim} dimensions: "
        "TileSAM segments 2D images (YX, RGB) and volumes (ZYX). Pick one channel or time "
        "point first (e.g. split the layer with right click > Split Stack)."
    )


def _as_source(data: Any, axes: str, layer: Image) -> ArraySource:
    from tilesam.io import ArraySource

    n = 3 if axes.startswith("Z") else 2
    if len(axes) != np.ndim(data):
        raise TileSAMError(
            f"Axes {axes!r} do not fit layer {layer.name!r} of shape {tuple(np.shape(data))}: "
            "give one letter per dimension (YX, YXC, ZYX or ZYXC)."
        )
    return ArraySource(
        data, axes=axes, spacing=tuple(layer.scale[-n:]), origin=tuple(layer.translate[-n:])
    )


@dataclass(frozen=True)
class Opened:
    """A session and its image's committed labels, opened together (`open_annotation`)."""

    session: Session
    committed: Committed


def open_annotation(layer: Image, settings: Settings) -> Opened:
    """Open the session for `layer` and its committed labels (on disk beside the cache,
    for large images), touching no viewer state: it may run in a worker thread.

    A labels store beside the cache that belongs to another image is refused
    (`TileSAMError`, nothing changed): committed objects are never overwritten."""
    from tilesam_napari import _labels_store

    session = open_session(layer, settings)
    try:
        committed = _labels_store.prepare(
            session.source.spatial_shape, session.signature["image"], settings.cache
        )
    except BaseException:
        session.close()
        raise
    return Opened(session, committed)
