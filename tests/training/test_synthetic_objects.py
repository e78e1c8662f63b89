"""The generic ``objects`` kind draws the variety it claims, with labels that match its images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure

from tilesam.training.synthetic import make_sample

SIZE = (256, 256)


@pytest.fixture(scope="module")
def samples() -> list:
    return [make_sample("objects", SIZE, seed) for seed in range(30)]


def _contrasts(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per object with a background ring: (mean inside - mean of a 3 px ring outside it) over
    the image's 1-99 % range."""
    img = image.astype(np.float64)
    spread = max(float(np.percentile(img, 99) - np.percentile(img, 1)), 1e-6)
    out = []
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        grow = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in sl)
        obj = labels[grow] == i
        ring = ndi.binary_dilation(obj, iterations=3) & (labels[grow] == 0)
        if ring.sum() >= 5 and obj.sum() >= 20:
            out.append((img[grow][obj].mean() - img[grow][ring].mean()) / spread)
    return np.array(out)


def test_faint_bright_and_dark_objects_all_occur(samples) -> None:
    c = np.concatenate([_contrasts(s.image, s.levels[0]) for s in samples])
    assert np.mean(np.abs(c) < 0.08) > 0.05, "faint objects, barely above the background"
    assert np.mean(c > 0.2) > 0.1 and np.mean(c < -0.2) > 0.05, "bright and dark objects"


def test_tubes_lobes_and_inclusions_occur(samples) -> None:
    elongated = lobed = enclosed = 0
    for s in samples:
        lab = s.levels[0]
        for p in measure.regionprops(lab):
            if p.area < 30:
                continue
            elongated += p.axis_minor_length > 0 and p.axis_major_length / p.axis_minor_length > 6
            lobed += p.solidity < 0.8  # concave: two lobes, notches, bends
        for i in range(1, int(lab.max()) + 1):
            obj = lab == i
            ring = ndi.binary_dilation(obj, iterations=2) & ~obj
            around = np.unique(lab[ring])
            enclosed += len(around) == 1 and around[0] > 0  # wholly inside one other object
    assert elongated >= 5 and lobed >= 10 and enclosed >= 3


def test_labels_follow_the_image_edges(samples) -> None:
    # Where an object differs clearly from its surround, the image changes most on its outline:
    # a label shifted or drawn apart from the image would fail this.
    ratios = []
    for s in samples:
        lab = s.levels[0]
        img = ndi.gaussian_filter(s.image.astype(np.float64), 1.0)
        grad = np.hypot(*np.gradient(img))
        edge = (lab != ndi.grey_erosion(lab, size=3)) | (lab != ndi.grey_dilation(lab, size=3))
        far = ~ndi.binary_dilation(edge, iterations=4) & (s.image > 0)
        if edge.sum() > 50 and far.sum() > 50 and np.abs(_contrasts(s.image, lab)).max() > 0.3:
            ratios.append(grad[edge].mean() / max(grad[far].mean(), 1e-9))
    assert len(ratios) >= 10 and np.median(ratios) > 1.5


def test_ranges_and_padding_vary(samples) -> None:
    assert {s.image.dtype.name for s in samples} == {"uint8", "uint16"}
    padded = [s for s in samples if not s.image[-8:, -8:].any() and not s.levels[0][-8:].any()]
    assert padded, "some scenes are slices padded into the model input (black margin)"
