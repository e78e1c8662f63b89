"""Draw docs/images/fade_rule.png: propagation through a sample nucleus without and with the
fade rule, seen across the slices.

    python docs/scripts/fade_figure.py

One click on the middle slice of a nucleus of ``nuclei_volume``, propagated with the bundled
``tiny`` as :func:`tilesam.propagate_mask` does, once without an image to judge fading and
once with it. Each panel is the XZ plane through the nucleus's centre at physical aspect:
the ground truth outlined in green, the propagated mask in red.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

import tilesam  # noqa: E402
from tilesam.cache.scale import DEFAULT_SLICE_SCALE  # noqa: E402
from tilesam.evaluate.simulated_prompts import middle_slice_point  # noqa: E402
from tilesam.samples import load_sample  # noqa: E402
from tilesam.segment.session import Session  # noqa: E402
from tilesam.volumes.propagate import session_predictor  # noqa: E402
from tilesam.volumes.walk import propagate_labels  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "images" / "fade_rule.png"
NUCLEI = (1, 4)


def xz_panel(ax, volume, truth, found, y: int, title: str) -> None:
    """The XZ plane at row `y`: the image, the truth's outline and the mask's."""
    plane = volume[:, y, :].astype(float)
    lo, hi = np.percentile(plane, (0.5, 99.5))
    rgb = np.repeat(np.clip((plane - lo) / (hi - lo), 0, 1)[..., None], 3, axis=-1)
    rgb[find_boundaries(found[:, y, :], mode="inner")] = (1.0, 0.2, 0.2)
    rgb[find_boundaries(truth[:, y, :], mode="inner")] = (0.2, 1.0, 0.2)
    # z spacing 1.0 um, x 0.25 um: stretch z four times to draw at physical aspect.
    ax.imshow(rgb, aspect=4.0, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("z (slices)")


def main() -> None:
    volume, labels = load_sample("nuclei_volume")
    session = Session(volume, tilesam.load_model("tiny"), None, slice_scale=DEFAULT_SLICE_SCALE)
    predict = session_predictor(session)
    fig, axes = plt.subplots(len(NUCLEI), 2, figsize=(8, 2.6 * len(NUCLEI)), squeeze=False)
    for row, obj in zip(axes, NUCLEI):
        truth = labels == obj
        z, y, x = middle_slice_point(truth)
        seed = {z: session.segment(points=[(y, x)], z=z).mask.astype(np.uint32)}
        for ax, image in zip(row, (None, session.source.read_slice)):
            found = propagate_labels(truth.shape, seed, predict, image=image).labels > 0
            dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
            rule = "with the fade rule" if image is not None else "without the fade rule"
            xz_panel(ax, volume, truth, found, int(y), f"nucleus {obj}, {rule}: 3D Dice {dice:.2f}")
    fig.suptitle("Green: ground truth; red: propagated from one click (XZ plane)", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
