"""Draw docs/images/interpolation.png: filling between annotated slices on a volume no rule
was chosen on.

    python docs/scripts/interpolation_figure.py

The independent generator's CT, seed 9 (a held-out seed of ``benchmarks/bench_propagation.py``
and ``benchmarks/bench_interpolation.py``), resliced across its slices (coronal, drawn at its
physical aspect) through the two-lobed liver. Its true masks on every third slice are the
annotations (white ticks); the slices between come from, left to right: the bundled ``tiny``'s
walk from every annotation as it was before 2026-12-07 (the gaps where both walks stopped left
empty), the same walk with those gaps interpolated (``fill_gaps``, the default), and shape-based
interpolation with no model (``method="interpolate"``). Red: what was found; green: the truth.
"""

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

import tilesam  # noqa: E402
from tilesam.evaluate.volume_generator import make_volume, write_volume  # noqa: E402
from tilesam.models.preprocess import normalize_intensity, window_range  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images" / "interpolation.png"
LIVER, EVERY = 1, 3
RUNS = {
    "the walk as before (gaps left empty)": {"fill_gaps": False},
    "the walk, gaps interpolated (default)": {},
    "interpolation, no model": {"method": "interpolate"},
}


def main() -> None:
    volume = make_volume("ct", 9)
    truth = volume.labels == LIVER
    present = np.flatnonzero(truth.any(axis=(1, 2)))
    annotated = [z for z in range(present[0], present[-1] + 1, EVERY)] + [int(present[-1])]
    seed = np.zeros(truth.shape, np.uint8)
    seed[annotated] = truth[annotated]
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_volume(volume, Path(tmp))
        for title, options in RUNS.items():
            found[title] = tilesam.propagate_mask(
                path, "tiny", mask=seed, window="soft-tissue", cache=Path(tmp) / "c.zarr",
                **options,
            ) > 0  # fmt: skip
    column = int(np.argmax(truth.sum(axis=(0, 1))))  # the liver's widest coronal cut
    gray = normalize_intensity(volume.image[:, :, column], window_range("soft-tissue"))
    fig, axes = plt.subplots(1, len(RUNS), figsize=(4.2 * len(RUNS), 3.6))
    aspect = volume.spacing[0] / volume.spacing[1]
    for ax, (title, mask) in zip(axes, found.items()):
        rgb = np.repeat(gray[..., None] / 255.0, 3, axis=-1)
        rgb[find_boundaries(truth[:, :, column], mode="inner")] = (0.2, 1.0, 0.2)
        rgb[find_boundaries(mask[:, :, column], mode="inner")] = (1.0, 0.2, 0.2)
        ax.imshow(rgb, aspect=aspect, interpolation="nearest")
        between = np.setdiff1d(np.arange(present[0], present[-1] + 1), annotated)
        dice = (
            2
            * (mask[between] & truth[between]).sum()
            / (mask[between].sum() + truth[between].sum())
        )
        ax.set_title(f"{title}\nDice of the slices between {dice:.2f}", fontsize=9)
        ax.set_yticks(annotated)
        ax.set_yticklabels([])
        ax.tick_params(axis="y", direction="in", color="white", length=8, width=1.5)
        ax.set_xticks([])
    fig.suptitle(f"Independent CT (seed 9), liver annotated on every {EVERY}rd slice (ticks)")
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
