"""TileSAM: promptable Segment-Anything-style segmentation of large scientific images."""

from tilesam.errors import TileSAMError
from tilesam.loading import load_model
from tilesam.model import ImageEmbedding, Prediction, SamModel

__all__ = ["ImageEmbedding", "Prediction", "SamModel", "TileSAMError", "load_model"]
__version__ = "0.1.0"
