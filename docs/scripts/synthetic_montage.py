"""Draw docs/images/synthetic.png: samples of each synthetic kind with their label outlines.

python docs/scripts/synthetic_montage.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from tilesam.models.preprocess import normalize_intensity, to_rgb  # noqa: E402
from tilesam.training.synthetic import KINDS, make_sample  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images" / "synthetic.png"
COLOURS = ((1.0, 0.2, 0.2), (0.2, 1.0, 0.2), (0.3, 0.5, 1.0))


def overlay(sample) -> np.ndarray:
    """The image as RGB with the outlines of each nesting level in its own colour."""
    rgb = to_rgb(normalize_intensity(sample.image)) / 255.0
    for level, colour in zip(sample.levels, COLOURS):
        rgb[find_boundaries(level, mode="inner")] = colour
    return rgb


def main() -> None:
    fig, axes = plt.subplots(len(KINDS), 4, figsize=(8, 2 * len(KINDS)))
    for row, kind in zip(axes, KINDS):
        for seed, ax in enumerate(row):
            sample = make_sample(kind, size=(256, 256), rng=seed)
            plain = to_rgb(normalize_intensity(sample.image)) / 255
            ax.imshow(overlay(sample) if seed % 2 else plain)
            ax.set_axis_off()
        row[0].set_title(kind, loc="left", fontsize=9)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(OUT)


if __name__ == "__main__":
    main()
