"""Folders of whole synthetic images with instance labels, for training on whole fields.

:func:`make_sample` draws crops for the crop trainer; a frozen-encoder run
(``tilesam train --freeze-encoder``) instead embeds whole images once and trains the decoder on
the windows inference decodes. :func:`write_synthetic_folder` writes such images as the
``name.tif`` / ``name_labels.tif`` pairs :mod:`tilesam.evaluate.datasets` reads, drawn at every
magnification: each image is drawn at ``side / zoom`` pixels (``zoom`` log-uniform in
``1..max_zoom``), so that embedding it at the model input shows its objects from their generated
size up to ``max_zoom`` times larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.atomic import atomic_output, make_folder
from tilesam.training.synthetic.api import KINDS, SyntheticSample, make_sample

__all__ = ["write_synthetic_folder"]


def write_synthetic_folder(
    out: str | Path,
    kinds: Sequence[str] = ("nuclei", "nuclei", "cells", "ct", "aerial"),
    count: int = 200,
    seed: int = 1,
    side: int = 1024,
    max_zoom: float = 6.0,
) -> list[Path]:
    """Write ``count`` synthetic images and their label images into ``out``.

    Parameters
    ----------
    out : str or Path
        Folder to write into (created if missing).
    kinds : sequence of str
        Kinds drawn in turn (image ``i`` is ``kinds[i % len(kinds)]``); repeat a kind to weight it.
    count : int, default 200
        Number of images.
    seed : int, default 1
        The same seed, kinds, side and zoom give the same images; a larger ``count`` extends a
        smaller one.
    side : int, default 1024
        Side of the model input the images are meant to fill.
    max_zoom : float, default 6.0
        Largest magnification; ``1`` draws every image at ``side`` pixels.

    Returns
    -------
    list of Path
        The image files, in order.

    Raises
    ------
    TileSAMError
        If a kind is unknown, ``count`` is not positive, ``max_zoom`` is below 1 or ``out``
        cannot be a folder.

    Examples
    --------
    >>> import tempfile
    >>> paths = write_synthetic_folder(tempfile.mkdtemp(), ("nuclei", "ct"), count=3, side=64)
    >>> [p.name for p in paths]
    ['nuclei000.tif', 'ct001.tif', 'nuclei002.tif']
    >>> sorted(p.name for p in paths[0].parent.glob("*_labels.tif"))
    ['ct001_labels.tif', 'nuclei000_labels.tif', 'nuclei002_labels.tif']
    """
    import tifffile

    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise TileSAMError(f"unknown synthetic kinds {bad or kinds!r}; valid kinds are {KINDS}")
    if count < 1 or max_zoom < 1:
        raise TileSAMError(f"count must be >= 1 and max_zoom >= 1; got {count} and {max_zoom}")
    folder = make_folder(out)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        zoom = float(np.exp(rng.uniform(0.0, np.log(max_zoom))))
        sample = make_sample(kind, size=max(16, round(side / zoom)), rng=rng)
        path = folder / f"{kind}{i:03d}.tif"
        labels = _target_level(sample, rng)
        for target, pixels in ((path, sample.image), (_labels_path(path), labels)):
            with atomic_output(target) as partial:
                tifffile.imwrite(partial, np.asarray(pixels))
        paths.append(path)
    return paths


def _labels_path(image: Path) -> Path:
    return image.with_name(image.stem + "_labels.tif")


def _target_level(sample: SyntheticSample, rng: np.random.Generator) -> np.ndarray:
    # Cells: nuclei or whole cells at random (never the clusters, which are mostly whole
    # images); other kinds: their finest level, the objects users click.
    levels = sample.levels
    if sample.kind == "cells":
        return levels[int(rng.integers(len(levels) - 1))].astype(np.uint16)
    return levels[0].astype(np.uint16)
