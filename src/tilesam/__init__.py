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
    "load_model": "tilesam.models.loading",
    "SamModel": "tilesam.models.sam_model",
    "Sam2Model": "tilesam.models.sam2_model",
    "Sam2Embedding": "tilesam.models.sam2_model",
    "ImageEmbedding": "tilesam.decode.embedding",
    "Prediction": "tilesam.decode.predictor",
    "open_image": "tilesam.io",
    "write_labels": "tilesam.io",
    "propagate_mask": "tilesam.volumes.propagate",
    "segment_image": "tilesam.segment.session",
    "Session": "tilesam.segment.session",
    "segment_everything": "tilesam.automatic.api",
}

__all__ = [
    "ImageEmbedding",
    "Prediction",
    "Sam2Embedding",
    "Sam2Model",
    "SamModel",
    "Session",
    "TileSAMError",
    "load_model",
    "open_image",
    "propagate_mask",
    "segment_everything",
    "segment_image",
    "write_labels",
]

if TYPE_CHECKING:
    from tilesam.automatic.api import segment_everything
    from tilesam.decode.embedding import ImageEmbedding
    from tilesam.decode.predictor import Prediction
    from tilesam.io import open_image, write_labels
    from tilesam.models.loading import load_model
    from tilesam.models.sam2_model import Sam2Embedding, Sam2Model
    from tilesam.models.sam_model import SamModel
    from tilesam.segment.session import Session, segment_image
    from tilesam.volumes.propagate import propagate_mask


#: Modules users reach as attributes (``tilesam.samples.load_sample``) without importing them.
_SUBMODULES = ("samples", "io")


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"tilesam.{name}")
    raise AttributeError(f"module 'tilesam' has no attribute {name!r}")
