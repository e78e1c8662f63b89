"""Public entry points: :func:`make_sample`, :func:`sample_stream` and :class:`SyntheticSample`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.training.synthetic.aerial import _make_aerial
from tilesam.training.synthetic.cells import _make_cells
from tilesam.training.synthetic.ct import _make_ct
from tilesam.training.synthetic.nuclei import _make_nuclei
from tilesam.training.synthetic.objects import _make_objects

__all__ = ["KINDS", "SyntheticSample", "make_sample", "sample_stream"]

KINDS: tuple[str, ...] = ("nuclei", "cells", "ct", "aerial", "objects")
"""The kinds of image :func:`make_sample` can draw."""

_MIN_SIDE = 16


@dataclass(frozen=True)
class SyntheticSample:
    """One synthetic image with its nested instance labels.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W)`` grayscale ``uint8`` or ``uint16`` (fluorescence often ``uint16`` with a low fill
        of its range, CT ``uint8`` after a soft-tissue window or raw ``uint16`` HU + 1024), or
        ``(H, W, 3)`` ``uint8`` RGB for aerial scenes.
    levels : tuple of numpy.ndarray
        Instance label images ``(H, W)`` ``uint32``, ``0`` = background, ids ``1..N`` consecutive
        within each level, finest level first. Every object of level ``k`` lies inside exactly one
        object of level ``k + 1``.
    kind : str
        One of :data:`KINDS`.

    Examples
    --------
    >>> s = make_sample("cells", (128, 128), rng=0)
    >>> len(s.levels), s.levels[0].dtype.name
    (3, 'uint32')
    """

    image: np.ndarray
    levels: tuple[np.ndarray, ...]
    kind: str


def make_sample(
    kind: str,
    size: tuple[int, int] | int = (256, 256),
    rng: np.random.Generator | int | None = None,
) -> SyntheticSample:
    """Draw one synthetic image with nested instance labels.

    Parameters
    ----------
    kind : str
        ``"nuclei"`` (fluorescence nuclei; levels ``(nuclei,)`` or ``(nuclei, clusters)``),
        ``"cells"`` (cytoplasm stain with nuclei; levels ``(nuclei, cells, clusters)``),
        ``"ct"`` (CT-like slice; levels ``(organs, body)``), ``"aerial"`` (RGB scene; levels
        ``(objects,)`` for rural scenes or ``(roofs, building blocks)`` for urban ones) or
        ``"objects"`` (generic objects of every shape and contrast: blobs, lobed shapes, tubes,
        fibres, inclusions; levels ``(objects,)``).
    size : tuple of int or int, default (256, 256)
        ``(H, W)`` of the image; an int means a square. Each side must be at least 16.
    rng : numpy.random.Generator or int or None
        Random source or seed. The same seed gives the same sample.

    Returns
    -------
    SyntheticSample
        The image, its label levels (finest first) and ``kind``. Level 0 always holds at least
        one object.

    Raises
    ------
    TileSAMError
        If ``kind`` is unknown or ``size`` is not valid.

    Examples
    --------
    >>> s = make_sample("nuclei", (256, 256), rng=1)
    >>> s.image.shape, s.levels[0].shape
    ((256, 256), (256, 256))
    >>> int(s.levels[0].max()) > 0
    True
    """
    if kind not in _GENERATORS:
        raise TileSAMError(f"unknown synthetic kind {kind!r}; valid kinds are {', '.join(KINDS)}")
    shape = _check_size(size)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    image, levels = None, ()
    for _ in range(20):
        image, levels = _GENERATORS[kind](gen, shape)
        if levels[0].max() > 0:
            break
    levels = tuple(np.ascontiguousarray(lv, dtype=np.uint32) for lv in levels)
    return SyntheticSample(image=image, levels=levels, kind=kind)


def sample_stream(
    kinds: Sequence[str] = KINDS,
    size: tuple[int, int] | int = (256, 256),
    seed: int = 0,
    weights: Sequence[float] | None = None,
) -> Iterator[SyntheticSample]:
    """Endless, reproducible stream of synthetic samples.

    Parameters
    ----------
    kinds : sequence of str, default KINDS
        Kinds to draw from (see :func:`make_sample`).
    size : tuple of int or int, default (256, 256)
        ``(H, W)`` of every image.
    seed : int, default 0
        The same seed gives the same stream.
    weights : sequence of float, optional
        Relative frequency of each kind; equal by default.

    Returns
    -------
    Iterator[SyntheticSample]
        An infinite iterator.

    Raises
    ------
    TileSAMError
        Immediately (not on the first ``next``) if a kind is unknown, ``kinds`` is empty, the
        weights do not match the kinds or are not non-negative with a positive sum, or ``size`` is
        not valid.

    Examples
    --------
    >>> stream = sample_stream(("nuclei", "aerial"), size=(64, 64), seed=3, weights=(3, 1))
    >>> [next(stream).kind for _ in range(4)]  # three nuclei to one aerial, on average
    ['nuclei', 'aerial', 'nuclei', 'nuclei']
    >>> next(stream).image.shape
    (64, 64)
    """
    kinds = tuple(kinds)
    if not kinds:
        raise TileSAMError(f"sample_stream needs at least one kind; valid kinds are {KINDS}")
    for k in kinds:
        if k not in _GENERATORS:
            raise TileSAMError(f"unknown synthetic kind {k!r}; valid kinds are {', '.join(KINDS)}")
    if weights is None:
        p = np.full(len(kinds), 1.0 / len(kinds))
    else:
        p = np.asarray(weights, dtype=np.float64)
        if p.shape != (len(kinds),) or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
            raise TileSAMError(
                f"weights must be {len(kinds)} non-negative numbers with a positive sum, "
                f"one per kind in {kinds}; got {weights!r}"
            )
        p = p / p.sum()
    shape = _check_size(size)
    return _stream(kinds, shape, int(seed), p)


def _stream(
    kinds: tuple[str, ...], shape: tuple[int, int], seed: int, p: np.ndarray
) -> Iterator[SyntheticSample]:
    master = np.random.default_rng(np.random.SeedSequence(seed))
    while True:
        k = kinds[int(master.choice(len(kinds), p=p))]
        child = np.random.default_rng(int(master.integers(0, 2**63 - 1)))
        yield make_sample(k, shape, child)


def _check_size(size: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok or h < _MIN_SIDE or w < _MIN_SIDE:
        raise TileSAMError(
            f"size must be (H, W) with integer sides of at least {_MIN_SIDE}; got {size!r}"
        )
    return h, w


_GENERATORS = {
    "nuclei": _make_nuclei,
    "cells": _make_cells,
    "ct": _make_ct,
    "aerial": _make_aerial,
    "objects": _make_objects,
}
