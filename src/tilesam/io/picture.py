"""Pictures: PNG, JPEG and BMP files, grey or colour, read whole (they are small).

One reader for every face: :func:`tilesam.open_image` (and with it ``tilesam segment``,
napari's reader, ``propagate``) and the annotated folders of ``tilesam evaluate`` /
``tilesam train`` read these files the same way. A palette image keeps its indices when
read as labels (annotation tools save instance ids that way), its colours otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tilesam.errors import TileSAMError

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_picture(path: str | Path, *, labels: bool = False) -> np.ndarray:
    """The pixels of a PNG, JPEG or BMP file: ``(H, W)`` grey or ``(H, W, C)`` colour.

    Examples
    --------
    >>> import tempfile, imageio.v3 as iio
    >>> path = Path(tempfile.mkdtemp()) / "cells.jpg"
    >>> iio.imwrite(path, np.full((20, 30, 3), 200, np.uint8))
    >>> read_picture(path).shape
    (20, 30, 3)
    """
    import imageio.v3 as iio
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            palette = im.mode == "P"
        # A palette label image holds its ids as palette indices: keep them, not colours.
        return iio.imread(path, plugin="pillow", mode="P" if labels and palette else None)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise TileSAMError(
            f"Cannot read the picture '{path}': {err}. Check that the file is complete and "
            "really a PNG, JPEG or BMP."
        ) from err


def picture_shape(path: str | Path) -> tuple[int, ...]:
    """The shape :func:`read_picture` returns, from the file's header."""
    import imageio.v3 as iio

    return tuple(iio.improps(path, plugin="pillow").shape)
