"""`ImageEmbedding`: an image's encoder output, and the sizes that map prompts and masks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImageEmbedding:
    """An image's encoder output and the geometry needed to map prompts and masks.

    ``features`` is ``(1, C, h, w)``, a torch tensor (what :meth:`tilesam.SamModel.embed`
    returns) or a NumPy array (what a session reads from its cache); ``input_size`` is the
    image's size after resizing to the model input (before padding); ``original_size`` its
    size as given.
    """

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]
