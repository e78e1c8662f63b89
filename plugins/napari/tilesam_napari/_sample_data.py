"""napari sample data: the images of TileSAM's ``sample_data/`` with their ground truth."""

from __future__ import annotations

import numpy as np

from tilesam.samples import SAMPLES, load_sample, sample_path

MOSAIC_SHAPE = (3072, 4096)


def nuclei() -> list[tuple]:
    """Fluorescence nuclei (512 x 512) and their 125 hand-drawn instance labels (faint,
    out-of-focus nuclei are unlabelled); an image the bundled model never saw in training."""
    image, labels = load_sample("nuclei_heldout")
    return [
        (image, {"name": "nuclei"}, "image"),
        (labels, {"name": "nuclei ground truth", "visible": False}, "labels"),
    ]


def mosaic() -> list[tuple]:
    """A large tiled mosaic (3072 x 4096, 12 tiles of 1024): the nuclei image mirrored
    over and over, made at load time so that the repository stays small."""
    image, _ = load_sample("nuclei_heldout")
    return [(mirror_tile(image, MOSAIC_SHAPE), {"name": "mosaic"}, "image")]


def mirror_tile(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`image` repeated by mirroring (no seams) to fill `shape`.

    >>> mirror_tile(np.arange(4).reshape(2, 2), (2, 5)).tolist()
    [[0, 1, 1, 0, 0], [2, 3, 3, 2, 2]]
    """
    pad = [(0, max(n - s, 0)) for n, s in zip(shape, image.shape)]
    return np.pad(image, pad, mode="symmetric")[: shape[0], : shape[1]]


def ct_volume() -> list[tuple]:
    """A synthetic abdomen-like CT (40 x 160 x 160, 2.5 x 0.8 x 0.8 mm, Hounsfield units)
    with its organ labels, shown in a soft-tissue window."""
    return _read_with_labels("ct_volume", contrast_limits=(-160, 240))


def nuclei_volume() -> list[tuple]:
    """A synthetic confocal-like stack of nuclei (32 x 128 x 128) with its labels."""
    return _read_with_labels("nuclei_volume")


def georaster() -> list[tuple]:
    """A 30 m Landsat-like GeoTIFF (512 x 512, 3 bands, Albers CRS) placed on the map by its
    transform, with 19 centre-pivot fields labelled (not all of them)."""
    return _read_with_labels("aerial", contrast_limits=(200, 2600))


def _read_with_labels(name: str, **image_kwargs) -> list[tuple]:
    """A sample through the plugin's reader (spacing -> scale, origin -> translate, or the
    georeference) and its ground truth on the same grid."""
    from tilesam_napari._io import read_image

    path = sample_path(name)
    ((image, meta, _),) = read_image(str(path))
    ((labels, _, _),) = read_image(str(path.with_name(SAMPLES[name][1])))
    # The image's metadata lets the writers save edited labels with its geometry.
    geometry = {k: meta[k] for k in ("scale", "translate", "affine", "metadata") if k in meta}
    return [
        (np.asarray(image), {**meta, "name": name, **image_kwargs}, "image"),
        (
            np.asarray(labels),
            {**geometry, "name": f"{name} ground truth", "visible": False},
            "labels",
        ),
    ]
