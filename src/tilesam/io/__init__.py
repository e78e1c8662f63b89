"""Lazy image readers behind one `ImageSource` interface, and the writers of labels and
masks (every file written atomically: `atomic_output`).

>>> import numpy as np
>>> from tilesam.io import open_image
>>> src = open_image(np.zeros((4, 256, 256), np.uint16))
>>> src.axes, src.n_slices, src.slice_shape
('ZYX', 4, (256, 256))
"""

from tilesam.io.array_source import ArraySource
from tilesam.io.atomic import atomic_output
from tilesam.io.axes import AXES, guess_axes
from tilesam.io.map_prompts import prompt_box_from_map, prompt_points_from_map
from tilesam.io.mask import write_mask
from tilesam.io.medical import MedicalSource
from tilesam.io.ome_zarr import write_ome_zarr
from tilesam.io.open import open_image
from tilesam.io.polygons import PolygonFeature, label_polygons, write_polygons
from tilesam.io.reslice import AxisView
from tilesam.io.signature import content_signature
from tilesam.io.source import ImageSource
from tilesam.io.tiff import TiffSource
from tilesam.io.vectors import PromptFeature, merge_features, read_prompt_features
from tilesam.io.video import VideoSource
from tilesam.io.write import write_labels
from tilesam.io.zarr_source import ZarrSource

__all__ = [
    "AXES",
    "ArraySource",
    "AxisView",
    "ImageSource",
    "MedicalSource",
    "PolygonFeature",
    "PromptFeature",
    "TiffSource",
    "VideoSource",
    "ZarrSource",
    "atomic_output",
    "content_signature",
    "guess_axes",
    "label_polygons",
    "merge_features",
    "open_image",
    "prompt_box_from_map",
    "prompt_points_from_map",
    "read_prompt_features",
    "write_labels",
    "write_mask",
    "write_ome_zarr",
    "write_polygons",
]
