"""Draw docs/images/volumes.png: the sample volumes as the encoder sees them, with their truth.

    python docs/scripts/volumes_figure.py

Top: the middle axial slice of ``ct_volume`` under three CT windows and the ``nuclei_volume``
slice under percentile normalisation (0.5-99.5 % of non-zero voxels). Bottom: the same
volumes resliced across the slices (coronal / XZ), drawn at their physical aspect, with the
ground-truth outlines that slice-to-slice propagation should reproduce.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from tilesam.io import open_image  # noqa: E402
from tilesam.preprocess import intensity_range, normalize_intensity, window_range  # noqa: E402
from tilesam.samples import sample_path  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images" / "volumes.png"


def outlined(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A 0..255 slice as RGB with the labels' outlines in red."""
    rgb = np.repeat(gray[..., None] / 255.0, 3, axis=-1)
    rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.2, 0.2)
    return rgb


def main() -> None:
    ct = open_image(sample_path("ct_volume"))
    hu, organs = (
        ct.read(),
        open_image(sample_path("ct_volume").with_name("ct_volume_labels.nii.gz")).read(),
    )
    cells = open_image(sample_path("nuclei_volume"))
    stack = cells.read()
    nuclei = open_image(sample_path("nuclei_volume").with_name("nuclei_volume_labels.tif")).read()
    stack_range = intensity_range(stack, nonzero=True)
    z = hu.shape[0] // 2
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.6))
    for ax, window in zip(axes[0], ("soft-tissue", "liver", "bone")):
        ax.imshow(normalize_intensity(hu[z], window_range(window)), cmap="gray", vmin=0, vmax=255)
        width, level = (round(window_range(window)[1] - window_range(window)[0]),
                        round(sum(window_range(window)) / 2))  # fmt: skip
        ax.set_title(f"CT, window {window} ({width} / {level} HU)", fontsize=9)
    axes[0, 3].imshow(normalize_intensity(stack[16], stack_range), cmap="gray", vmin=0, vmax=255)
    axes[0, 3].set_title("nuclei, 0.5-99.5 % of non-zero voxels", fontsize=9)
    coronal = normalize_intensity(hu[:, 92], window_range("soft-tissue"))
    axes[1, 0].imshow(outlined(coronal, organs[:, 92]), aspect=ct.spacing[0] / ct.spacing[2])
    axes[1, 0].set_title("CT across the slices (y = 92), truth", fontsize=9)
    side = normalize_intensity(stack[:, 64], stack_range)
    axes[1, 1].imshow(outlined(side, nuclei[:, 64]), aspect=cells.spacing[0] / cells.spacing[2])
    axes[1, 1].set_title("nuclei across the slices (y = 64), truth", fontsize=9)
    axes[1, 2].imshow(outlined(normalize_intensity(hu[z], window_range("soft-tissue")), organs[z]))
    axes[1, 2].set_title(f"CT slice {z}, truth", fontsize=9)
    axes[1, 3].imshow(outlined(normalize_intensity(stack[16], stack_range), nuclei[16]))
    axes[1, 3].set_title("nuclei slice 16, truth", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(OUT)


if __name__ == "__main__":
    main()
