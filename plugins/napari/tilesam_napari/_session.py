"""Opening a `tilesam.Session` for an image layer, with the dock widget's settings.

Nothing here touches the viewer, so a session can be opened in a worker thread (loading a
model and sampling a large image's intensities take seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.models.weights import DEFAULT_MODEL

if TYPE_CHECKING:
    from napari.layers import Image

    from tilesam.io import ArraySource
    from tilesam.segment.session import Session


@dataclass(frozen=True)
class Settings:
    """What a session is built from: the dock widget's fields.

    ``tile_size=None`` / ``halo=None`` take an existing cache's values, else the model's
    input size and the core's `tilesam.cache.tiling.DEFAULT_HALO`; ``axes=None`` reads the
    layer's own (YX, YXC for RGB, ZYX).
    """

    model: str = DEFAULT_MODEL
    checkpoint: str | None = None
    device: str | None = None
    cache: str | None = None
    tile_size: int | None = None
    halo: int | None = None
    axes: str | None = None


def open_session(layer: Image, settings: Settings) -> Session:
    """A `tilesam.Session` over an image layer: loads the model and opens or creates the
    cache. Touches no viewer state, so it can run in a worker thread.

    The model comes from the core's one cache per process (`shared_model`), so every
    annotator, and the core's own workers, share it. A volume's slices get the core's
    default magnification (as ``tilesam embed`` and ``tilesam propagate`` give them), so
    the plugin and the command line share a cache."""
    from tilesam import Session
    from tilesam.models.loading import shared_model

    data = layer.data[0] if layer.multiscale else layer.data  # prompts at full resolution
    source = _as_source(data, settings.axes or _layer_axes(layer), layer)
    # A checkpoint alone names its architecture; with a name too it would have to fit it.
    name = None if settings.checkpoint else settings.model
    return Session(
        source,
        shared_model(name, settings.checkpoint, settings.device),
        settings.cache or None,
        tile_size=settings.tile_size,
        halo=settings.halo,
    )


def _layer_axes(layer: Image) -> str:
    if layer.rgb:
        return "YXC"
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
