"""Draw docs/images/volumes.png: the sample volumes as the encoder sees them, with their truth,
and what propagation from one click per object makes of them.

    python docs/scripts/volumes_figure.py

Top: the middle axial slice of ``ct_volume`` under three CT windows and the ``nuclei_volume``
slice under percentile normalisation (0.5-99.5 % of non-zero voxels). Middle: the same
volumes resliced across the slices (coronal / XZ), drawn at their physical aspect, with the
ground-truth outlines that slice-to-slice propagation should reproduce. Bottom: every object
propagated with the bundled ``tiny`` from one click on its middle slice (as
``benchmarks/bench_propagation.py`` does), outlined in red over the truth in green.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

import tilesam  # noqa: E402
from tilesam.evaluate.simulated_prompts import middle_slice_point  # noqa: E402
from tilesam.io import open_image  # noqa: E402
from tilesam.models.preprocess import intensity_range, normalize_intensity, window_range  # noqa: E402
from tilesam.samples import sample_path  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images" / "volumes.png"


RED, GREEN = (1.0, 0.2, 0.2), (0.2, 1.0, 0.2)


def outlined(gray: np.ndarray, labels: np.ndarray, found: np.ndarray | None = None) -> np.ndarray:
    """A 0..255 slice as RGB with the labels' outlines in red, or with `found`'s in red over
    the labels' in green."""
    rgb = np.repeat(gray[..., None] / 255.0, 3, axis=-1)
    if found is not None:
        rgb[find_boundaries(found, mode="inner")] = RED
    rgb[find_boundaries(labels, mode="inner")] = RED if found is None else GREEN
    return rgb


def propagated(name: str, truth: np.ndarray, window: str | None) -> tuple[np.ndarray, float]:
    """Every object of a sample propagated from one click on its middle slice, and the mean
    3D Dice of the objects."""
    model = tilesam.load_model("tiny")
    path = sample_path(name)
    session = tilesam.Session(path, model, None, window=window, progress=False)
    found, dice = np.zeros(truth.shape, np.uint32), []
    for oid in np.unique(truth[truth > 0]):
        obj = truth == oid
        mask = tilesam.propagate_mask(path, points=[middle_slice_point(obj)], session=session) > 0
        found[mask & (found == 0)] = oid
        dice.append(2 * (mask & obj).sum() / (mask.sum() + obj.sum()))
    return found, float(np.mean(dice))


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
    fig, axes = plt.subplots(3, 4, figsize=(12, 9.9))
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
    ct_found, ct_dice = propagated("ct_volume", organs, "soft-tissue")
    axes[2, 0].imshow(outlined(normalize_intensity(hu[:, 60], window_range("soft-tissue")),
                               organs[:, 60], ct_found[:, 60]),
                      aspect=ct.spacing[0] / ct.spacing[2])  # fmt: skip
    axes[2, 0].set_title(f"CT across (y = 60), propagated: Dice {ct_dice:.2f}", fontsize=9)
    axes[2, 1].imshow(
        outlined(normalize_intensity(hu[z], window_range("soft-tissue")), organs[z], ct_found[z])
    )
    axes[2, 1].set_title(f"CT slice {z}, propagated", fontsize=9)
    nuclei_found, nuclei_dice = propagated("nuclei_volume", nuclei, None)
    axes[2, 2].imshow(outlined(side, nuclei[:, 64], nuclei_found[:, 64]),
                      aspect=cells.spacing[0] / cells.spacing[2])  # fmt: skip
    axes[2, 2].set_title(f"nuclei across (y = 64), propagated: Dice {nuclei_dice:.2f}", fontsize=9)
    axes[2, 3].imshow(
        outlined(normalize_intensity(stack[16], stack_range), nuclei[16], nuclei_found[16])
    )
    axes[2, 3].set_title("nuclei slice 16, propagated", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=90)
    print(OUT)


if __name__ == "__main__":
    main()
