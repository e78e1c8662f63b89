"""`ModelCard`: what TileSAM needs to know of a model besides running it.

A session signs its cache with the card's entries, sizes its stores by the embedding
shape, and thresholds masks as the card says, whether the model is loaded (torch) or only
its decoder answers from the cache (NumPy). A card needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelCard:
    """A model's identity, geometry and mask thresholds.

    Attributes
    ----------
    name : str
        Registry name, or the label of a checkpoint file.
    weights_hash : str or None
        SHA-256 of the weights file (None for weights built in memory).
    encoder : str
        The image encoder's family (``"vit"``, ``"tiny_vit"``, ``"tiny_cnn"``).
    image_size : int
        Side of the square model input.
    embedding_shape : (C, h, w)
        One image's embedding.
    mask_threshold : float
        The logit above which a pixel is in the mask (SAM: 0).
    box_mask_threshold : float or None
        The same for prompts with a box (None: `mask_threshold`); see
        :func:`tilesam.models.registry.mask_thresholds`.
    high_res_shapes : tuple of (C, h, w)
        The high-resolution feature maps a decoder needs besides the embedding (SAM 2:
        ``(32, 256, 256)`` and ``(64, 128, 128)``); empty for SAM's models.

    Examples
    --------
    >>> card = ModelCard("tiny", None, "tiny_cnn", 1024, (256, 64, 64), -0.5, -2.0)
    >>> card.signature()
    {'name': 'tiny', 'weights_sha256': None, 'encoder': 'tiny_cnn', 'input_size': 1024}
    """

    name: str
    weights_hash: str | None
    encoder: str
    image_size: int
    embedding_shape: tuple[int, int, int]
    mask_threshold: float = 0.0
    box_mask_threshold: float | None = None
    high_res_shapes: tuple[tuple[int, int, int], ...] = ()

    def signature(self) -> dict[str, Any]:
        """The model's entry of a cache signature: the embeddings depend on these."""
        return {
            "name": self.name,
            "weights_sha256": self.weights_hash,
            "encoder": self.encoder,
            "input_size": self.image_size,
        }
