"""`ImageEmbedding`: an image's encoder output, and the sizes that map prompts and masks."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ImageEmbedding:
    """An image's encoder output and the geometry needed to map prompts and masks.

    ``features`` is ``(1, C, h, w)``, a torch tensor (what :meth:`tilesam.SamModel.embed`
    returns) or a NumPy array (what a session reads from its cache, in the memory layout
    of :func:`token_major`); ``input_size`` is the
    image's size after resizing to the model input (before padding); ``original_size`` its
    size as given.
    """

    features: Any
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def token_major(features: np.ndarray) -> np.ndarray:
    """`features` ``(C, h, w)`` as float32 laid out token by token in memory, ``(h, w, C)``,
    and seen as ``(C, h, w)``.

    The prompt decoder reads the image as ``(h*w, C)`` tokens: from this layout a view, from
    ``(C, h, w)`` memory a transposing copy of the whole tile at every decode (4 MB for
    SAM's 64 x 64 x 256, about 1.2 ms on this project's CPU; converting a float16 tile in
    this order when it is read costs no more than in the stored order with torch, 0.65 ms
    more with NumPy alone). Features already so laid out are returned as they are.

    Examples
    --------
    >>> stored = np.arange(12, dtype=np.float16).reshape(3, 2, 2)  # C = 3 channels
    >>> features = token_major(stored)
    >>> features.shape, features.dtype, bool((features == stored).all())
    ((3, 2, 2), dtype('float32'), True)
    >>> features.reshape(3, -1).T.flags.c_contiguous  # the tokens, without a copy
    True
    >>> token_major(features) is features
    True
    """
    tokens = features.transpose(1, 2, 0)
    if features.dtype == np.float32 and tokens.flags.c_contiguous:
        return features
    torch = sys.modules.get("torch")  # never imported here: the NumPy decoder runs without it
    shareable = features.flags.writeable and min(features.strides) > 0  # as torch asks
    if torch is not None and shareable:
        # torch converts in this order as fast as NumPy's astype in the stored one (0.5 ms
        # for a 128 x 64 x 64 float16 tile), NumPy's strided copy takes 1.6x that.
        out = torch.empty(tokens.shape, dtype=torch.float32, device="cpu")  # not the defaults
        out.copy_(torch.from_numpy(features).permute(1, 2, 0))
        return out.numpy().transpose(2, 0, 1)
    out = np.empty(tokens.shape, np.float32)
    out[...] = tokens
    return out.transpose(2, 0, 1)
