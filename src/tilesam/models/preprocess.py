"""From a user's image to the model input: intensity normalisation, RGB, resizing.

One function, :func:`normalize_intensity`, owns how intensities are mapped to the 0..255
scale the SAM encoders expect; the range it maps comes from :func:`intensity_range` (robust
percentiles, optionally of the non-zero voxels only, for MR and microscopy volumes whose
zero padding would otherwise pull the range down) or from a CT window,
:func:`window_range` (Hounsfield units, width / level).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from tilesam.errors import TileSAMError

if TYPE_CHECKING:
    import torch

DEFAULT_PERCENTILES = (0.5, 99.5)
#: CT windows in Hounsfield units, ``name: (width, level)``; the range is level -/+ width / 2.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft-tissue": (400.0, 40.0),  # abdomen
    "lung": (1500.0, -600.0),
    "brain": (80.0, 40.0),
    "mediastinum": (350.0, 50.0),
    "bone": (1800.0, 400.0),
    "liver": (150.0, 30.0),
}
# Percentiles of very large images are estimated from this many evenly strided pixels.
_MAX_SAMPLES = 4_000_000


def intensity_range(
    image: np.ndarray,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    *,
    nonzero: bool = False,
) -> tuple[float, float]:
    """Robust intensity range ``(low, high)`` of an image: the given percentiles of its pixels.

    NaN pixels are ignored; with `nonzero`, so are zeros (the padding around an MR or
    microscopy volume), unless every pixel is zero. An image that is all NaN, or constant,
    raises :class:`TileSAMError` (there is nothing to segment). 64-bit integers are
    compared exactly (as offsets from their minimum), not as floats; a range that floats
    cannot hold (a few values near 2**62) raises :class:`TileSAMError` saying what to do.

    Examples
    --------
    >>> intensity_range(np.arange(1000, dtype=np.uint16))
    (4.995, 994.005)
    >>> intensity_range(np.r_[np.zeros(9000), np.arange(1, 1001)], nonzero=True)
    (5.995, 995.005)
    >>> intensity_range(2**40 + np.arange(1000, dtype=np.int64))
    (1099511627780.995, 1099511628770.005)
    """
    flat = np.asarray(image).reshape(-1)
    if flat.size > _MAX_SAMPLES:
        flat = flat[:: flat.size // _MAX_SAMPLES + 1]
    flat = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if nonzero and flat.any():
        flat = flat[flat != 0]
    if flat.size == 0:
        raise TileSAMError("The image has no finite pixel values (all NaN or infinite).")
    # float64 holds integers exactly only below 2**53: wider ones are offsets from the minimum.
    base = int(flat.min()) if _inexact_int(flat.dtype) else 0
    values = _minus(flat, base) if base else flat
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    if high <= low:
        raise TileSAMError(
            f"The image is constant (every pixel is {flat[0]:g}): there is nothing to segment."
        )
    if not base:
        return low, high
    span = high - low
    low, high = float(base + Fraction(low)), float(base + Fraction(high))
    step = float(np.spacing(max(abs(low), abs(high))))
    if step * 255 > span:  # the float range would be off by more than one grey level
        raise TileSAMError(
            f"The image's {flat.dtype} pixels have a range of only {span:g} (percentiles "
            f"{percentiles}) near {base:.6g}: so far from zero, the floating-point intensity "
            f"range that TileSAM keeps (and a cache signs) has steps of {step:g}, too coarse "
            "for that range. Subtract an offset first (e.g. image - image.min(), kept as "
            "integers) or convert the image to a narrower integer type, then try again."
        )
    return low, high


def _inexact_int(dtype: np.dtype) -> bool:
    """Integers that float64 does not hold exactly (64-bit)."""
    return dtype.kind in "iu" and dtype.itemsize >= 8


def _minus(values: np.ndarray, base: int) -> np.ndarray:
    """``values - base`` exactly, as uint64, for integers ``values >= base`` (any integer
    dtype: the subtraction wraps modulo 2**64 and the true difference is below 2**64)."""
    return values.astype(np.uint64) - np.uint64(base % 2**64)


def window_range(window: str | tuple[float, float]) -> tuple[float, float]:
    """The intensity range ``(low, high)`` of a CT window: a name of :data:`CT_WINDOWS` or a
    custom ``(width, level)`` in Hounsfield units.

    Examples
    --------
    >>> window_range("lung"), window_range((400, 40))
    ((-1350.0, 150.0), (-160.0, 240.0))
    """
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise TileSAMError(
                f"Unknown CT window {window!r}. Use one of {', '.join(CT_WINDOWS)}, or a custom "
                "(width, level) in Hounsfield units, e.g. window=(400, 40)."
            )
        width, level = CT_WINDOWS[window]
    else:
        try:
            width, level = (float(v) for v in window)
        except (TypeError, ValueError):
            raise TileSAMError(
                f"window must be a name ({', '.join(CT_WINDOWS)}) or (width, level), "
                f"got {window!r}."
            ) from None
        if not (np.isfinite(width) and np.isfinite(level) and width > 0):
            raise TileSAMError(f"A CT window needs a finite width > 0 and level, got {window!r}.")
    return level - width / 2, level + width / 2


def normalize_intensity(
    image: np.ndarray,
    intensity: tuple[float, float] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> np.ndarray:
    """Map an image to float32 on the 0..255 scale.

    ``uint8`` images are used as they are (SAM was trained on them). Any other dtype is
    clipped to ``intensity = (low, high)`` and scaled linearly; without ``intensity`` the
    range is the image's robust percentiles (:func:`intensity_range`). For tiles of a large
    image pass the range of the *whole* image, so an object looks the same in every tile.
    NaN pixels become 0. Integers that a float32 does not hold exactly (32 and 64 bits) and
    float64 pixels are scaled without losing their precision first. ``intensity`` may hold
    one ``low`` and one ``high`` per channel (the last axis).

    Examples
    --------
    >>> normalize_intensity(2**62 + np.array([[0, 5, 10]], np.int64))
    array([[  0. , 127.5, 255. ]], dtype=float32)
    >>> normalize_intensity(np.array([[[10, 100]]], np.uint16), ((0, 0), (20, 400)))
    array([[[127.5 ,  63.75]]], dtype=float32)
    """
    image = np.asarray(image)
    if image.dtype == np.uint8 and intensity is None:
        return image.astype(np.float32)
    if image.dtype.kind not in "uif" and image.dtype != bool:
        raise TileSAMError(f"Images of dtype {image.dtype} are not supported; convert to numbers.")
    if intensity is None and _inexact_int(image.dtype) and image.size:
        # Offsets from the minimum, exactly: a narrow span near 2**62 keeps its contrast.
        image = _minus(image, int(image.min()))
    low, high = intensity if intensity is not None else intensity_range(image, percentiles)
    if np.ndim(low):  # one range per channel (the bands of a multispectral scene)
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        scaled = (image.astype(np.float64) - low) * (255.0 / np.maximum(high - low, 1e-12))
        return np.nan_to_num(np.clip(scaled, 0.0, 255.0), nan=0.0).astype(np.float32)
    scale = 255.0 / max(high - low, 1e-12)
    if image.dtype.kind in "iu" and image.dtype.itemsize >= 4:
        scaled = _scaled_integers(image, float(low), float(high)) * scale
    elif image.dtype == np.float64:
        scaled = (image - low) * scale
    else:
        scaled = (image.astype(np.float32) - low) * scale
    return np.nan_to_num(np.clip(scaled, 0.0, 255.0), nan=0.0).astype(np.float32, copy=False)


def _scaled_integers(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """``image - low`` as float64 for 32 / 64-bit integers, exact where it matters: pixels
    are clipped to the range in their own type, then taken as offsets from its integer
    floor (float32 would round 2**62 + 5 and 2**62 alike)."""
    info = np.iinfo(image.dtype)
    floor = min(max(math.floor(low), info.min), info.max)
    ceil = min(max(math.ceil(high), floor), info.max)
    clipped = np.clip(image, image.dtype.type(floor), image.dtype.type(ceil))
    return _minus(clipped, floor).astype(np.float64) + float(floor - Fraction(low))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return ``(H, W, 3)``: grayscale is repeated, a single channel or an alpha is dropped."""
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4):
        channels = image[..., :3]
        return np.repeat(channels, 3, axis=-1) if channels.shape[-1] == 1 else channels
    raise TileSAMError(
        f"Expected a 2D image, (H, W) grayscale or (H, W, 3) RGB, but got shape {image.shape}. "
        "For a volume or a time series, pass one slice (e.g. image[z]) or use the 3D tools."
    )


def resized_shape(shape: tuple[int, int], target: int) -> tuple[int, int]:
    """Shape after scaling the longest side to ``target``, rounded like SAM's ResizeLongestSide."""
    scale = target / max(shape)
    return int(shape[0] * scale + 0.5), int(shape[1] * scale + 0.5)


def prepare_image(
    image: np.ndarray,
    target: int,
    intensity: tuple[float, float] | None = None,
    *,
    square: bool = False,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Normalise, make RGB and resize an image: ``(1, 3, h, w)`` on the 0..255 scale.

    The longest side is resized to `target` (SAM); with `square`, both sides are, the aspect
    ratio not kept (SAM 2). Returns the tensor and the original ``(H, W)``.
    """
    # Imported here: the rest of this module serves sessions that never import torch.
    import torch
    import torch.nn.functional as F

    image = np.asarray(image)
    rgb = to_rgb(image)
    if min(rgb.shape[:2]) < 1:
        raise TileSAMError(f"The image is empty (shape {image.shape}).")
    pixels = torch.from_numpy(np.ascontiguousarray(normalize_intensity(rgb, intensity)))
    pixels = pixels.permute(2, 0, 1)[None]
    size = (target, target) if square else resized_shape(rgb.shape[:2], target)
    if size != rgb.shape[:2]:
        pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True)
    return pixels, (int(rgb.shape[0]), int(rgb.shape[1]))
