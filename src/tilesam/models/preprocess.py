"""From a user's image to the model input: intensity normalisation, RGB, resizing.

One function, :func:`normalize_intensity`, owns how intensities are mapped to the 0..255
scale the SAM encoders expect; the range it maps comes from :func:`intensity_range` (robust
percentiles, optionally of the non-zero voxels only, for MR and microscopy volumes whose
zero padding would otherwise pull the range down) or from a CT window,
:func:`window_range` (Hounsfield units, width / level).
"""

from __future__ import annotations

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
    raises :class:`TileSAMError` (there is nothing to segment).

    Examples
    --------
    >>> intensity_range(np.arange(1000, dtype=np.uint16))
    (4.995, 994.005)
    >>> intensity_range(np.r_[np.zeros(9000), np.arange(1, 1001)], nonzero=True)
    (5.995, 995.005)
    """
    flat = np.asarray(image).reshape(-1)
    if flat.size > _MAX_SAMPLES:
        flat = flat[:: flat.size // _MAX_SAMPLES + 1]
    flat = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
    if nonzero and flat.any():
        flat = flat[flat != 0]
    if flat.size == 0:
        raise TileSAMError("The image has no finite pixel values (all NaN or infinite).")
    low, high = (float(v) for v in np.percentile(flat, percentiles))
    if high <= low:
        low, high = float(flat.min()), float(flat.max())
    if high <= low:
        raise TileSAMError(
            f"The image is constant (every pixel is {low:g}): there is nothing to segment."
        )
    return low, high


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
    NaN pixels become 0.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8 and intensity is None:
        return image.astype(np.float32)
    if image.dtype.kind not in "uif" and image.dtype != bool:
        raise TileSAMError(f"Images of dtype {image.dtype} are not supported; convert to numbers.")
    low, high = intensity if intensity is not None else intensity_range(image, percentiles)
    scaled = (image.astype(np.float32) - low) * (255.0 / max(high - low, 1e-12))
    return np.nan_to_num(np.clip(scaled, 0.0, 255.0), nan=0.0)


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
    image: np.ndarray, target: int, intensity: tuple[float, float] | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Normalise, make RGB and resize an image: ``(1, 3, h, w)`` on the 0..255 scale.

    Returns the tensor and the original ``(H, W)``.
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
    size = resized_shape(rgb.shape[:2], target)
    if size != rgb.shape[:2]:
        pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True)
    return pixels, (int(rgb.shape[0]), int(rgb.shape[1]))
