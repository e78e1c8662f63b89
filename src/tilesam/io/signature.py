"""`content_signature`: a cheap fingerprint of an image's pixels for cache signatures."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from tilesam.io.source import ImageSource

_N_BLOCKS = 16  # sampled blocks per slice
_BLOCK = 16  # block edge in pixels
_N_SLICES = 5  # sampled slices of a volume (first, last and three between)


def content_signature(source: ImageSource) -> str:
    """A cheap, deterministic fingerprint of an image's pixels, without reading all of them.

    Hashes the shape, dtype and axes, plus up to 16 blocks of 16 x 16 pixels (all
    channels) on up to 5 slices (first, last, evenly spaced between), placed by a
    low-discrepancy sequence so they spread over the slice without lining up with tile
    or chunk boundaries. Each block is read on its own, so the cost is at most 80 small
    region reads whatever the image size.

    It catches: a different image, a different shape, dtype, axes or channel count,
    re-exports that rescale intensities or change bit depth, flips, rotations, crops and
    shifts, most re-orderings of slices. It cannot catch: edits confined to pixels it
    does not sample (a local annotation burned in, a few changed pixels, changes only in
    unsampled slices), and it ignores metadata (spacing, origin, georeference), which
    does not change embeddings. Hash the whole file when certainty is worth a full read.

    Examples
    --------
    >>> import numpy as np
    >>> from tilesam.io import ArraySource
    >>> a = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    >>> content_signature(ArraySource(a)) == content_signature(ArraySource(a.copy()))
    True
    >>> content_signature(ArraySource(a)) == content_signature(ArraySource(a[::-1]))
    False
    """
    h = hashlib.sha256()
    header = {"shape": list(source.shape), "dtype": source.dtype.str, "axes": source.axes}
    h.update(json.dumps(header, sort_keys=True).encode())
    nz = source.n_slices
    slices = sorted({round(i * (nz - 1) / (_N_SLICES - 1)) for i in range(_N_SLICES)})
    for z in slices:
        for region in _sample_blocks(source.slice_shape):
            block = source.read_slice(z, region)
            # Fixed byte order so that the hash is the same on any machine.
            h.update(np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).tobytes())
    return "sample-v1:" + h.hexdigest()


def _sample_blocks(shape: tuple[int, int]) -> list[tuple[slice, slice]]:
    # R2 sequence (Roberts 2018): well-spread 2D points from the plastic number.
    g = 1.32471795724474602596
    a1, a2 = 1 / g, 1 / g**2
    by, bx = min(_BLOCK, shape[0]), min(_BLOCK, shape[1])
    out = []
    for i in range(_N_BLOCKS):
        fy, fx = (0.5 + a1 * i) % 1.0, (0.5 + a2 * i) % 1.0
        y, x = int(fy * (shape[0] - by + 1)), int(fx * (shape[1] - bx + 1))
        out.append((slice(y, y + by), slice(x, x + bx)))
    return out
