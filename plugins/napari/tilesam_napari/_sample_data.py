"""napari sample data: the images of TileSAM's ``sample_data/`` with their ground truth."""

from __future__ import annotations

from tilesam.samples import load_sample


def nuclei() -> list[tuple]:
    """Fluorescence nuclei (256 x 256) and their 65 hand-drawn instance labels."""
    image, labels = load_sample("nuclei")
    return [
        (image, {"name": "nuclei"}, "image"),
        (labels, {"name": "nuclei ground truth", "visible": False}, "labels"),
    ]
