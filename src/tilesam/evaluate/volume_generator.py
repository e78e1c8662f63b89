"""Volumes with a known 3D truth, drawn independently of the sample generator, for measuring
propagation on data its rules and thresholds were never chosen on.

``docs/scripts/make_sample_volumes.py`` made the samples and the volumes on which
propagation's stop rules were chosen (its seeds 7 to 9): axis-aligned ellipsoids with a
wobbly surface, each organ a separate body at one contrast, square pixels, the identity
direction, the spine at the bottom of the image. This module draws what that one does not:

- ``"ct"``: an int16 CT section in Hounsfield units, 36 x 176 x 208 at 3.75 x 0.68 x
  0.92 mm (slices far thicker than the pixels, which are not square), stored with the
  patient's back at the top of the image and a direction flipping y (so the world
  orientation is that of any CT). Objects: a two-lobed liver, a kidney pressed against it
  (touching), the aorta as a curved tube through every slice, a faint spleen 30 HU above the
  muscle around it, and a gallbladder darker than the liver it sits in. Unlabelled clutter
  around them: bowel gas and fat, vertebrae with discs, ribs.
- ``"micro8"``: an 8-bit confocal-like stack, 28 x 144 x 160 at 0.9 x 0.13 x 0.13 um:
  rotated ellipsoidal cells (not axis-aligned), two pairs pressed together, one faint cell,
  a fibre crossing the slices as a curved tube; a blur 2.6 times wider along z than across
  (in voxels), saturation at 255.
- ``"micro16"``: a 16-bit (12-bit camera) widefield-like stack, 22 x 160 x 136 at 2.0 x
  0.325 x 0.325 um: elongated, textured nuclei (bright chromatin spots), a touching pair,
  a faint one, a fibre lying in the plane, uneven illumination, and a signal that grows
  with z (the samples' fades with it).

The same `seed` gives the same volume. :func:`write_volume` writes one as a file with its
geometry (NIfTI with the flipped direction; ImageJ TIFF), as a user would open it.

Examples
--------
>>> volume = make_volume("ct", seed=1)
>>> volume.image.shape, volume.image.dtype.name, volume.window, sorted(volume.names)
((36, 176, 208), 'int16', 'soft-tissue', [1, 2, 3, 4, 5])
>>> volume.names[3], bool((volume.labels == 3).any(axis=(1, 2)).all())  # every slice
('aorta (tube)', True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from tilesam.errors import TileSAMError

FAMILIES = ("ct", "micro8", "micro16")


@dataclass(frozen=True)
class GeneratedVolume:
    """A volume ``(Z, Y, X)`` and its truth (0 background, ids of `names`), with geometry.

    ``direction`` holds ITK's direction cosines over ``(x, y, z)``, row by row; ``window``
    the CT window to view it with (None: percentiles, as for microscopy).
    """

    family: str
    seed: int
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    names: dict[int, str]
    window: str | None = None
    direction: tuple[float, ...] = field(default=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))

    @property
    def name(self) -> str:
        return f"{self.family}-{self.seed}"


def make_volume(family: str, seed: int) -> GeneratedVolume:
    """The volume of `family` (one of `FAMILIES`) drawn with `seed`."""
    makers: dict[str, Callable[[np.random.Generator, int], GeneratedVolume]] = {
        "ct": _ct,
        "micro8": _micro8,
        "micro16": _micro16,
    }
    if family not in makers:
        raise TileSAMError(f"Unknown family {family!r}; use one of {', '.join(FAMILIES)}.")
    return makers[family](np.random.default_rng([seed, FAMILIES.index(family)]), seed)


def write_volume(volume: GeneratedVolume, folder: Path) -> Path:
    """Write `volume`'s image as a file with its geometry; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    if volume.family == "ct":
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(volume.image)
        image.SetSpacing(volume.spacing[::-1])
        image.SetDirection(volume.direction)
        path = folder / f"{volume.name}.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path
    import tifffile

    path = folder / f"{volume.name}.tif"
    z, y, x = volume.spacing
    tifffile.imwrite(
        path,
        volume.image,
        imagej=True,
        resolution=(1 / x, 1 / y),
        metadata={"spacing": z, "unit": "um", "axes": "ZYX"},
    )
    return path


# -- shapes --------------------------------------------------------------------------------
def _grid(shape: tuple[int, int, int]) -> list[np.ndarray]:
    return list(np.ogrid[tuple(slice(0, n) for n in shape)])


def _rotated_ellipsoid(shape, centre, radii, angle: float, tilt: float = 0.0) -> np.ndarray:
    """An ellipsoid with voxel `radii` (z, y, x), turned by `angle` in the plane and tilted
    by `tilt` towards z (radians): its sections move and turn from slice to slice."""
    z, y, x = (g - c for g, c in zip(_grid(shape), centre))
    u = np.cos(angle) * y + np.sin(angle) * x
    v = -np.sin(angle) * y + np.cos(angle) * x
    w, u = np.cos(tilt) * z + np.sin(tilt) * u, -np.sin(tilt) * z + np.cos(tilt) * u
    return (w / radii[0]) ** 2 + (u / radii[1]) ** 2 + (v / radii[2]) ** 2 < 1.0


def _tube(shape, path: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], radii, zs):
    """A tube along z over slices `zs`: its centre at ``path(z) -> (y, x)``, radii (y, x)."""
    z, y, x = _grid(shape)
    cy, cx = path(z.astype(np.float64))
    inside = ((y - cy) / radii[0]) ** 2 + ((x - cx) / radii[1]) ** 2 < 1.0
    return inside & (z >= zs[0]) & (z < zs[1])


def _paint(labels: np.ndarray, oid: int, inside: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Give `oid` the pixels of `inside` within `within` that no object holds yet: a body
    drawn later is pressed against the earlier ones, touching them."""
    own = inside & within & (labels == 0)
    labels[own] = oid
    return own


def _smooth(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise / noise.std()


# -- CT ------------------------------------------------------------------------------------
def _ct(rng: np.random.Generator, seed: int) -> GeneratedVolume:
    shape = (36, 176, 208)
    z, y, x = _grid(shape)
    taper = np.sin(np.pi * (z + 4) / (shape[0] + 8))  # the body narrows at both ends
    cy, cx = 88 + rng.uniform(-4, 4), 104 + rng.uniform(-4, 4)
    outer = ((y - cy) / (56 + 14 * taper)) ** 2 + ((x - cx) / (80 + 14 * taper)) ** 2
    body, inner = outer < 1.0, outer < 0.8
    hu = np.where(body, -95.0, -1000.0)  # air, subcutaneous fat
    hu[inner] = 38.0  # muscle and soft tissue
    _ct_clutter(rng, hu, inner, cy, cx)
    labels = np.zeros(shape, np.uint16)
    values = _ct_organs(rng, shape, labels, inner, cy, cx)
    for oid, value in values.items():
        hu[labels == oid] = value
    hu += 7.0 * _smooth(rng, shape, (1, 3, 3)) * inner  # organ texture
    hu = ndimage.gaussian_filter(hu, (0.4, 1.0, 0.8)) + rng.normal(0.0, 9.0, shape)
    names = {
        1: "liver (two lobes)",
        2: "kidney (touching the liver)",
        3: "aorta (tube)",
        4: "spleen (faint)",
        5: "gallbladder (darker, in the liver)",
    }
    # The back at the top of the image: stored with y flipped, which the direction undoes.
    image = np.round(hu[:, ::-1]).astype(np.int16)
    flipped = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    return GeneratedVolume(
        "ct", seed, image, np.ascontiguousarray(labels[:, ::-1]), (3.75, 0.68, 0.92),
        names, "soft-tissue", flipped,
    )  # fmt: skip


def _ct_clutter(rng, hu: np.ndarray, inner: np.ndarray, cy: float, cx: float) -> None:
    """Unlabelled structures around the organs: bowel gas and fat, vertebrae, ribs."""
    shape = hu.shape
    for _ in range(14):
        centre = (rng.uniform(0, shape[0]), cy + rng.uniform(0, 40), cx + rng.uniform(-60, 60))
        radii = (rng.uniform(2, 5), rng.uniform(4, 9), rng.uniform(4, 9))
        pocket = _rotated_ellipsoid(shape, centre, radii, rng.uniform(0, np.pi)) & inner
        hu[pocket] = rng.choice([-700.0, -90.0])
    z, y, x = _grid(shape)
    column = ((y - cy - 47) / 11.0) ** 2 + ((x - cx) / 10.0) ** 2 < 1.0
    disc = (z % 8) < 2  # a disc between vertebral bodies every 8 slices
    hu[column & disc] = 90.0
    hu[column & ~disc] = 480.0
    for angle in np.linspace(0.3, np.pi - 0.3, 7):
        ry, rx = cy - 55 * np.sin(angle), cx + 82 * np.cos(angle)
        rib = ((y - ry) / 4.0) ** 2 + ((x - rx) / 5.0) ** 2 + 0 * z < 1.0
        hu[rib] = 600.0


def _ct_organs(rng, shape, labels, inner, cy, cx) -> dict[int, float]:
    """Draw the five organs into `labels`; their mean HU."""

    def j() -> float:  # a small move of each organ, per seed
        return rng.uniform(-3, 3)

    mid = shape[0] / 2 + j()
    lobes = _rotated_ellipsoid(shape, (mid, cy - 10 + j(), cx - 42 + j()), (14, 38, 40), 0.3)
    lobes |= _rotated_ellipsoid(shape, (mid - 3, cy - 22, cx + 8 + j()), (8, 20, 30), -0.2)
    gall = _rotated_ellipsoid(shape, (mid + 3, cy + 8 + j(), cx - 40), (5, 9, 7), 0.5, 0.3)
    _paint(labels, 5, gall, inner)  # first, so the liver wraps around it
    _paint(labels, 1, lobes, inner)
    kidney = _rotated_ellipsoid(shape, (mid + 2, cy + 26 + j(), cx - 38 + j()), (7, 17, 11), 0.4)
    _paint(labels, 2, kidney, inner)
    aorta = _tube(
        shape,
        lambda z: (cy + 30 + 4 * np.sin(z / 9.0), cx + 14 + 3 * np.cos(z / 7.0)),
        (11.0, 8.0),  # round in millimetres: 0.68 mm rows, 0.92 mm columns
        (0, shape[0]),
    )
    _paint(labels, 3, aorta, inner)
    spleen = _rotated_ellipsoid(shape, (mid - 2, cy - 6 + j(), cx + 60 + j()), (9, 26, 14), -0.5)
    _paint(labels, 4, spleen, inner)
    return {1: 62.0, 2: 160.0, 3: 210.0, 4: 68.0, 5: 12.0}


# -- microscopy ----------------------------------------------------------------------------
def _place_cells(rng, shape, labels, count, size, elongation, pairs) -> list[float]:
    """Rotated ellipsoids (`pairs` of them pressed together); their relative brightness."""
    bright: list[float] = []
    centres: list[np.ndarray] = []
    while len(bright) < count:
        r_in = rng.uniform(*size)
        radii = (rng.uniform(0.25, 0.35) * shape[0], r_in * elongation, r_in)
        margin = r_in * elongation + 2
        if len(bright) % 2 == 1 and len(bright) // 2 < pairs:  # press against the last one
            turn = rng.uniform(0, 2 * np.pi)
            step = 1.7 * r_in * np.array([np.sin(turn), np.cos(turn)])
            centre = np.array([centres[-1][0] + rng.uniform(-1, 1), *(centres[-1][1:] + step)])
        else:
            centre = np.array([rng.uniform(0.4, 0.6) * shape[0],
                               *(rng.uniform(margin, n - margin) for n in shape[1:])])  # fmt: skip
            if any(np.hypot(*(centre - c)[1:]) < 2.6 * r_in for c in centres):
                continue
        if not all(margin / 2 < c < n - margin / 2 for c, n in zip(centre[1:], shape[1:])):
            continue
        body = _rotated_ellipsoid(
            shape, centre, radii, rng.uniform(0, np.pi), rng.uniform(-0.3, 0.3)
        )
        if _paint(labels, len(bright) + 1, body, np.ones(shape, bool)).sum() < 200:
            labels[labels == len(bright) + 1] = 0  # hidden behind the others: draw another
            continue
        centres.append(centre)
        bright.append(rng.uniform(0.7, 1.0))
    bright[-1] = 0.3  # the last is faint
    return bright


def _stack(rng, labels, bright, extra, psf, depth) -> np.ndarray:
    """Fluorescence of the labelled objects (and `extra` {id: brightness}), blurred by
    `psf`, scaled along z by `depth`, in relative units (0..1 for the brightest)."""
    signal = np.zeros(labels.shape)
    for oid, value in [*enumerate(bright, start=1), *extra.items()]:
        signal[labels == oid] = value
    signal *= 1.0 + 0.2 * _smooth(rng, labels.shape, (1, 1.5, 1.5))
    return ndimage.gaussian_filter(signal, psf) * depth


def _micro8(rng: np.random.Generator, seed: int) -> GeneratedVolume:
    shape = (28, 144, 160)
    labels = np.zeros(shape, np.uint16)
    bright = _place_cells(rng, shape, labels, 7, (11, 16), 1.3, pairs=2)
    fibre = len(bright) + 1
    x0, y0 = rng.uniform(30, 50), rng.uniform(30, 110)

    def path(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # slanted across z, curving
        return y0 + 8 * np.sin(z / 6.0), x0 + 3.2 * z

    _paint(labels, fibre, _tube(shape, path, (5.0, 5.0), (3, 25)), np.ones(shape, bool))
    light = _stack(rng, labels, bright, {fibre: 0.6}, (1.8, 0.7, 0.7), 1.0)
    counts = rng.poisson(light * 260.0 + 14.0)  # saturates at 255 in the brightest cells
    image = np.clip(counts, 0, 255).astype(np.uint8)
    names = {i: "cell" for i in range(1, fibre)}
    names.update({1: "cell (pressed against 2)", 3: "cell (pressed against 4)"})
    names.update({fibre - 1: "cell (faint)", fibre: "fibre (tube across the slices)"})
    return GeneratedVolume("micro8", seed, image, labels, (0.9, 0.13, 0.13), names)


def _micro16(rng: np.random.Generator, seed: int) -> GeneratedVolume:
    shape = (22, 160, 136)
    labels = np.zeros(shape, np.uint16)
    bright = _place_cells(rng, shape, labels, 8, (9, 13), 1.8, pairs=1)
    spots = (_smooth(rng, shape, (0.7, 1.2, 1.2)) > 1.6) & (labels > 0)  # chromatin
    fibre = len(bright) + 1
    z, y, x = _grid(shape)
    y0 = rng.uniform(20, 40)
    lying = (np.abs(y - y0 - 6 * np.sin(x / 15.0)) < 4) & (x > 20) & (x < 116) & (z >= 10)
    _paint(labels, fibre, lying & (z < 13), np.ones(shape, bool))  # a fibre in the plane
    depth = np.linspace(0.55, 1.0, shape[0])[:, None, None]  # brighter deeper in: reversed
    light = _stack(rng, labels, bright, {fibre: 0.7}, (1.0, 1.1, 1.1), depth)
    light += 0.5 * ndimage.gaussian_filter(spots.astype(float), 1.0)
    field_light = 1.0 - 0.35 * (((y - 40) / 160.0) ** 2 + ((x - 120) / 136.0) ** 2)
    counts = rng.poisson(light * field_light * 2400.0 + 60.0) + 100  # camera offset 100
    image = np.clip(counts + rng.normal(0, 6, shape), 0, 4095).astype(np.uint16)
    names = {i: "nucleus (elongated)" for i in range(1, fibre)}
    names.update({1: "nucleus (pressed against 2)", fibre - 1: "nucleus (faint)"})
    names[fibre] = "fibre (lying in the plane)"
    return GeneratedVolume("micro16", seed, image, labels, (2.0, 0.325, 0.325), names)
