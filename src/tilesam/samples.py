"""The sample images of ``sample_data/`` (with their ground truth), for demos and tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tilesam.errors import TileSAMError

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
SAMPLES = {"nuclei": ("nuclei.tif", "nuclei_labels.tif")}


def sample_path(name: str) -> Path:
    """Path of a sample image (``"nuclei"``); see ``sample_data/NOTICE.md`` for sources."""
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
    """
    import tifffile

    path = sample_path(name)
    return tifffile.imread(path), tifffile.imread(path.with_name(SAMPLES[name][1]))
