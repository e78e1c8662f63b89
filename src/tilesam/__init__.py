"""TileSAM: promptable Segment-Anything-style segmentation of large scientific images.

The top-level names are imported lazily, so that ``import tilesam.io`` (e.g. in a dask
worker reading tiles) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tilesam.errors import TileSAMError

__version__ = "0.1.0"

_LAZY = {
    "load_model": "tilesam.loading",
    "SamModel": "tilesam.model",
    "ImageEmbedding": "tilesam.prediction",
    "Prediction": "tilesam.prediction",
    "open_image": "tilesam.io",
    "write_labels": "tilesam.io",
    "propagate_mask": "tilesam.propagate",
    "segment_image": "tilesam.segment",
    "Session": "tilesam.session",
}

__all__ = [
    "ImageEmbedding",
    "Prediction",
    "SamModel",
    "Session",
    "TileSAMError",
    "load_model",
    "open_image",
    "propagate_mask",
    "segment_image",
    "write_labels",
]

if TYPE_CHECKING:
    from tilesam.io import open_image, write_labels
    from tilesam.loading import load_model
    from tilesam.model import SamModel
    from tilesam.prediction import ImageEmbedding, Prediction
    from tilesam.propagate import propagate_mask
    from tilesam.segment import segment_image
    from tilesam.session import Session


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tilesam' has no attribute {name!r}")
