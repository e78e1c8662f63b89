"""Training examples: square crops at model-input scale with nested instance labels.

An :class:`Example` is what one image contributes to a training step. Real images are
normalised once per image, as a :class:`tilesam.Session` opened on their file normalises
them (an item's ``intensity``; its own range where it has none), scaled like the model
input would see them, then cropped; synthetic images are generated at crop size directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tilesam.models.preprocess import normalize_intensity, to_rgb
from tilesam.training.synthetic import make_sample


@dataclass(frozen=True)
class Example:
    """``pixels`` ``(S, S, 3)`` float32 on the 0..255 scale; ``levels`` instance label
    images ``(S, S)``, finest first, each object nested in one object of the next level."""

    pixels: np.ndarray
    levels: tuple[np.ndarray, ...]


def synthetic_examples(
    kinds: Sequence[str],
    crop: int,
    rng: np.random.Generator,
    zoom_range: tuple[float, float] = (1.0, 6.0),
) -> Iterator[Example]:
    """Endless synthetic examples of the given kinds, at a random zoom.

    The generators draw objects of one typical pixel size (nuclei about 8 px across); real
    images come at any magnification (Coelho's nuclei are 70 to 90 px across at model
    scale), so each sample is drawn at ``crop / zoom`` pixels and scaled up to ``crop``,
    with ``zoom`` log-uniform in ``zoom_range``.
    """
    while True:
        zoom = float(np.exp(rng.uniform(*np.log(zoom_range))))
        side = max(int(round(crop / zoom)), 32)
        sample = make_sample(str(rng.choice(kinds)), size=(side, side), rng=rng)
        pixels = to_rgb(normalize_intensity(sample.image)).astype(np.float32)
        levels = np.stack(sample.levels, axis=-1)
        pixels, levels = _resize_to(pixels, levels, crop)
        yield Example(pixels, tuple(np.moveaxis(levels, -1, 0)))


class RealImages:
    """Annotated images prepared for cropping: normalised and scaled as for the model input.

    Parameters
    ----------
    items
        Objects with ``image`` and ``labels`` arrays (e.g. a ``LabelledImageFolder``), and an
        ``intensity`` where they have one: the range the image is normalised to, as
        :meth:`tilesam.SamModel.embed` takes it (a folder's items carry the range a session
        opened on their file uses; without one, the image's own).
    image_size
        The model input size; images are scaled so their longest side matches it, as
        :meth:`tilesam.SamModel.embed` does.
    """

    def __init__(self, items: Sequence, image_size: int) -> None:
        self.images = [
            _prepare(item.image, item.labels, image_size, getattr(item, "intensity", None))
            for item in items
        ]

    def largest_object(self) -> int:
        """Pixels of the largest labelled object at the model's input scale (0: none)."""
        sizes = [np.unique(labels[labels > 0], return_counts=True)[1] for _, labels in self.images]
        return int(max((s.max() for s in sizes if s.size), default=0))

    def examples(
        self, crop: int, rng: np.random.Generator, scale_range: tuple[float, float] = (0.7, 1.4)
    ) -> Iterator[Example]:
        """Endless random crops, with a random extra scale factor."""
        while True:
            pixels, labels = self.images[int(rng.integers(len(self.images)))]
            scale = float(rng.uniform(*scale_range))
            yield _random_crop(*_rescale(pixels, labels, scale), crop, rng)


def _prepare(
    image: np.ndarray, labels: np.ndarray, image_size: int, intensity: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    pixels = to_rgb(normalize_intensity(np.asarray(image), intensity)).astype(np.float32)
    return _rescale(pixels, np.asarray(labels), image_size / max(pixels.shape[:2]))


def _rescale(pixels: np.ndarray, labels: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if abs(scale - 1) < 1e-3:
        return pixels, labels
    size = tuple(max(1, int(round(s * scale))) for s in labels.shape)
    return _resize_to(pixels, labels, size)


def _resize_to(
    pixels: np.ndarray, labels: np.ndarray, size: int | tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear ``(H, W, 3)`` pixels and nearest-neighbour ``(H, W[, L])`` labels."""
    size = (size, size) if isinstance(size, int) else size
    img = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
    img = F.interpolate(img, size=size, mode="bilinear", antialias=True)[0].permute(1, 2, 0)
    return img.numpy(), resize_labels(labels, size)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour ``(H, W[, L])`` labels resized to ``size``, dtype kept: by indexing,
    so ids pass through untouched (as float32 values, ids above 2**24 would change)."""
    rows, cols = (_nearest_sources(n, old) for n, old in zip(size, labels.shape[:2]))
    return labels[rows[:, None], cols]


def _nearest_sources(n: int, old: int) -> np.ndarray:
    """The source index of each of `n` pixels resized from `old`, by torch's ``nearest``
    rule: ``floor(i * (old / n))`` in float32, the same pixels its interpolation picks."""
    scale = np.float32(old / n)
    return np.minimum(np.floor(np.arange(n, dtype=np.float32) * scale), old - 1).astype(np.int64)


def _random_crop(
    pixels: np.ndarray, labels: np.ndarray, crop: int, rng: np.random.Generator
) -> Example:
    """A crop of side ``crop`` (zero-padded where the image is smaller), centred near an object."""
    pad_y, pad_x = max(crop - labels.shape[0], 0), max(crop - labels.shape[1], 0)
    if pad_y or pad_x:
        pixels = np.pad(pixels, ((0, pad_y), (0, pad_x), (0, 0)))
        labels = np.pad(labels, ((0, pad_y), (0, pad_x)))
    ys, xs = np.nonzero(labels)
    k = int(rng.integers(len(ys))) if len(ys) else None
    cy = ys[k] if k is not None else labels.shape[0] // 2
    cx = xs[k] if k is not None else labels.shape[1] // 2
    y0 = int(np.clip(cy - rng.integers(crop), 0, labels.shape[0] - crop))
    x0 = int(np.clip(cx - rng.integers(crop), 0, labels.shape[1] - crop))
    window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    return Example(pixels[window], (labels[window],))


def augment(example: Example, rng: np.random.Generator) -> Example:
    """Random flips, 90-degree rotations, a gamma / contrast change and dimming."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def geometry(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(0, 1))
        return np.ascontiguousarray(a[:, ::-1] if flip else a)

    pixels = geometry(example.pixels) / 255.0
    pixels = pixels ** float(np.exp(rng.normal(0, 0.25)))
    pixels = (pixels - 0.5) * float(rng.uniform(0.8, 1.2)) + 0.5 + float(rng.normal(0, 0.05))
    if rng.random() < 0.5:
        # A dim acquisition: uint8 images are used as they are, and fluorescence is often
        # recorded in a fraction of the range above a camera offset.
        contrast = float(np.exp(rng.uniform(np.log(0.12), 0.0)))
        pixels = pixels * contrast + float(rng.uniform(0.0, 0.15))
    pixels = np.clip(pixels * 255.0, 0, 255).astype(np.float32)
    return Example(pixels, tuple(geometry(level) for level in example.levels))


def mix(
    streams: Sequence[Iterator[Example]], weights: Sequence[float], rng: np.random.Generator
) -> Iterator[Example]:
    """Draw from several example streams with the given probabilities."""
    p = np.asarray(weights, dtype=float) / np.sum(weights)
    while True:
        yield next(streams[int(rng.choice(len(streams), p=p))])
