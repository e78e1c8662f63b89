"""The sample images of ``sample_data/`` (with their ground truth), for demos and tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tilesam.errors import TileSAMError

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
#: name: (image, ground-truth labels). The volumes are made by
#: ``docs/scripts/make_sample_volumes.py``: ``ct_volume`` in Hounsfield units with its
#: spacing (liver 1, kidneys 2 and 3, spine 4), ``nuclei_volume`` a confocal-like stack.
#: ``aerial`` is a GeoTIFF (solaris' test scene) with field polygons burnt in by
#: ``docs/scripts/make_aerial_sample.py``. ``nuclei_heldout`` is a fluorescence field the
#: bundled model ``tiny`` never saw in training (``nuclei`` was in its training data): the
#: demo, the napari sample and the quality test of the shipped weights use it.
SAMPLES = {
    "nuclei": ("nuclei.tif", "nuclei_labels.tif"),
    "nuclei_heldout": ("nuclei_heldout.tif", "nuclei_heldout_labels.tif"),
    "ct_volume": ("ct_volume.nii.gz", "ct_volume_labels.nii.gz"),
    "nuclei_volume": ("nuclei_volume.tif", "nuclei_volume_labels.tif"),
    "aerial": ("aerial.tif", "aerial_labels.tif"),
}


def sample_path(name: str) -> Path:
    """Path of a sample image (a name of `SAMPLES`); see ``sample_data/NOTICE.md``."""
    if name not in SAMPLES:
        raise TileSAMError(f"Unknown sample {name!r}; samples: {', '.join(SAMPLES)}.")
    path = SAMPLE_DIR / SAMPLES[name][0]
    if not path.is_file():
        raise TileSAMError(
            f"Sample {path} is missing: the samples ship with the source checkout of TileSAM "
            "(sample_data/); install it from the repository (pip install -e .)."
        )
    return path


def load_sample(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A sample image and its instance labels.

    Examples
    --------
    >>> image, labels = load_sample("nuclei")
    >>> image.shape, int(labels.max())
    ((256, 256), 65)
    >>> image, labels = load_sample("nuclei_heldout")
    >>> image.shape, image.dtype.name, int(labels.max())
    ((512, 512), 'uint8', 125)
    >>> volume, organs = load_sample("ct_volume")
    >>> volume.shape, volume.dtype.name, int(organs.max())
    ((40, 160, 160), 'int16', 4)
    """
    from tilesam.io import open_image

    path = sample_path(name)
    with open_image(path) as image, open_image(path.with_name(SAMPLES[name][1])) as labels:
        return image.read(), labels.read()
