"""Scoring instance segmentations (every object of an image), and the classical baseline.

**Metrics**, per image, as micro-sam reports them (its ``elf.evaluation`` definitions): the
objects of a segmentation and of the truth are matched one to one (an optimal assignment)
where their IoU is at least a threshold ``t``; with ``tp`` matches, ``fp`` unmatched
predictions and ``fn`` unmatched true objects,

- **segmentation accuracy** ``SA(t) = tp / (tp + fp + fn)`` (0 when ``tp == 0``);
  **SA50** is ``SA(0.5)``; **mSA**, the mean segmentation accuracy, the mean of
  ``SA(t)`` over ``t = 0.50, 0.55, ..., 0.95``;
- **F1** ``= 2 tp / (2 tp + fp + fn)`` at ``t = 0.5``, with precision and recall.

IoU counts every pixel of both objects (background included); label 0 is background in
both images. A dataset's figure is the mean over its images (micro-sam's convention).

**The classical baseline** (:func:`watershed_baseline`): Gaussian smoothing, an Otsu
threshold, holes filled and specks removed, the distance transform, its local maxima at
least ``min_distance`` apart as seeds, and a watershed of the negated distance inside the
foreground. :func:`best_min_distance` chooses ``min_distance`` on the very data it is scored
on, so the baseline is an optimistic reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from tilesam.errors import TileSAMError

#: IoU thresholds of the mean segmentation accuracy: 0.50, 0.55, ..., 0.95
THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


@dataclass(frozen=True)
class InstanceScores:
    """One image's scores (see the module docstring).

    Examples
    --------
    >>> truth = np.zeros((8, 8), int); truth[:4, :4] = 1; truth[5:, 5:] = 2
    >>> s = score_instances(truth, truth)
    >>> s.f1, s.msa, s.sa50, (s.n_pred, s.n_true)
    (1.0, 1.0, 1.0, (2, 2))
    """

    f1: float
    precision: float
    recall: float
    sa50: float
    msa: float
    n_pred: int
    n_true: int
    accuracies: tuple[float, ...] = field(repr=False)

    def as_dict(self) -> dict[str, float]:
        """The scores as a plain dictionary (for JSON)."""
        return {
            "f1": self.f1,
            "precision": self.precision,
            "recall": self.recall,
            "sa50": self.sa50,
            "msa": self.msa,
            "n_pred": self.n_pred,
            "n_true": self.n_true,
        }


def iou_matrix(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of every predicted object (rows) with every true object (columns), in the
    order of their ids; objects of neither image are left out.

    >>> a = np.array([[1, 1, 0, 2]]); b = np.array([[1, 0, 0, 3]])
    >>> iou_matrix(a, b).round(2).tolist()
    [[0.5, 0.0], [0.0, 1.0]]
    """
    p_ids, t_ids, overlap = _overlaps(pred, truth)
    sizes_p, sizes_t = overlap.sum(1, keepdims=True), overlap.sum(0, keepdims=True)
    iou = overlap / np.maximum(sizes_p + sizes_t - overlap, 1e-12)
    return iou[p_ids != 0][:, t_ids != 0]


def duplicates_and_splits(
    pred: np.ndarray, truth: np.ndarray, share: float = 0.1
) -> tuple[int, int]:
    """Two faults of a segmentation that stitches tiles, counted in true objects:
    *duplicated*, two or more predicted objects lie mostly (over half their area) inside
    it; *split*, two or more predicted objects each cover more than `share` of it.

    >>> truth = np.zeros((4, 8), int); truth[:, :4] = 1; truth[:, 4:] = 2
    >>> pred = truth.copy(); pred[:, 2:4] = 3  # object 1 in two halves
    >>> duplicates_and_splits(pred, truth), duplicates_and_splits(truth, truth)
    ((1, 1), (0, 0))
    """
    p_ids, t_ids, overlap = _overlaps(pred, truth)
    inside = overlap.argmax(axis=1)  # for each predicted object, the truth it lies in most
    mostly = (p_ids != 0) & (overlap.max(axis=1) > overlap.sum(axis=1) / 2)
    hosts = inside[mostly & (t_ids[inside] != 0)]
    duplicates = int(np.count_nonzero(np.bincount(hosts, minlength=len(t_ids)) > 1))
    covering = overlap[p_ids != 0] > share * overlap.sum(axis=0)
    splits = int(np.count_nonzero(covering[:, t_ids != 0].sum(axis=0) > 1))
    return duplicates, splits


def _overlaps(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ids of both images (background included) and the pixels each pair shares."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise TileSAMError(
            f"A segmentation of shape {pred.shape} cannot be scored against labels of shape "
            f"{truth.shape}: they must cover the same pixels."
        )
    p_ids, p_index = np.unique(pred.ravel(), return_inverse=True)
    t_ids, t_index = np.unique(truth.ravel(), return_inverse=True)
    pairs = np.bincount(p_index * len(t_ids) + t_index, minlength=len(p_ids) * len(t_ids))
    return p_ids, t_ids, pairs.reshape(len(p_ids), len(t_ids)).astype(np.float64)


def matches(iou: np.ndarray, threshold: float) -> int:
    """True positives: an optimal one-to-one matching of objects with IoU >= `threshold`
    (pairs above the threshold first, then the larger IoU)."""
    if iou.size == 0 or not (iou >= threshold).any():
        return 0
    costs = -(iou >= threshold).astype(float) - iou / (2 * min(iou.shape))
    rows, cols = linear_sum_assignment(costs)
    return int(np.count_nonzero(iou[rows, cols] >= threshold))


def score_instances(
    pred: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> InstanceScores:
    """F1, precision, recall at IoU 0.5, SA50 and mSA of one segmentation (see the module
    docstring).

    >>> truth = np.zeros((6, 6), int); truth[:3, :3] = 1; truth[3:, 3:] = 2
    >>> pred = np.zeros((6, 6), int); pred[:3, :3] = 5  # one of two found, exactly
    >>> s = score_instances(pred, truth)
    >>> round(s.f1, 3), s.sa50, s.msa, s.recall
    (0.667, 0.5, 0.5, 0.5)
    """
    iou = iou_matrix(pred, truth)
    n_pred, n_true = iou.shape
    tps = [matches(iou, t) for t in thresholds]
    accuracies = tuple(tp / (n_pred + n_true - tp) if tp else 0.0 for tp in tps)
    tp = matches(iou, 0.5)
    return InstanceScores(
        f1=2 * tp / (n_pred + n_true) if tp else 0.0,
        precision=tp / n_pred if tp else 0.0,
        recall=tp / n_true if tp else 0.0,
        sa50=accuracies[list(thresholds).index(0.5)] if 0.5 in thresholds else float("nan"),
        msa=float(np.mean(accuracies)),
        n_pred=n_pred,
        n_true=n_true,
        accuracies=accuracies,
    )


def mean_scores(scores: Iterable[InstanceScores]) -> dict[str, float]:
    """The mean of each score over images (micro-sam's convention), and the object counts.

    >>> truth = np.zeros((4, 4), int); truth[:2, :2] = 1
    >>> mean_scores([score_instances(truth, truth), score_instances(0 * truth, truth)])["f1"]
    0.5
    """
    scores = list(scores)
    if not scores:
        raise TileSAMError("No image was scored: give at least one image with its labels.")
    out = {k: float(np.mean([getattr(s, k) for s in scores])) for k in _MEANS}
    out |= {k: int(sum(getattr(s, k) for s in scores)) for k in ("n_pred", "n_true")}
    out["images"] = len(scores)
    return out


_MEANS = ("f1", "precision", "recall", "sa50", "msa")


def score_method(
    segment: Callable[[np.ndarray], np.ndarray], pairs: Iterable[tuple[np.ndarray, np.ndarray]]
) -> tuple[dict[str, float], list[InstanceScores]]:
    """Run `segment` (image to instance labels) on each ``(image, labels)`` pair: the mean
    scores and each image's, e.g. to put segment-everything beside the baseline."""
    per_image = [score_instances(segment(image), truth) for image, truth in pairs]
    return mean_scores(per_image), per_image


# -- the classical baseline -----------------------------------------------------------------
def watershed_baseline(
    image: np.ndarray, min_distance: int = 7, *, sigma: float = 1.0, min_size: int = 25
) -> np.ndarray:
    """Nuclei the classical way: Otsu threshold, distance transform, peak-seeded watershed.

    `image` is 2D grayscale (an RGB image is averaged); bright objects on a dark
    background. Returns int32 labels, 0 background.

    Examples
    --------
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")
    >>> labels = watershed_baseline(image, min_distance=5)
    >>> labels.shape, bool(labels.max() > 30)
    ((256, 256), True)
    """
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    gray = np.asarray(image, dtype=np.float64)
    if gray.ndim == 3:
        gray = gray.mean(axis=-1)
    if gray.ndim != 2:
        raise TileSAMError(f"The baseline segments 2D images, got shape {np.shape(image)}.")
    smooth = ndimage.gaussian_filter(gray, sigma) if sigma > 0 else gray
    if smooth.min() == smooth.max():
        return np.zeros(gray.shape, dtype=np.int32)
    foreground = ndimage.binary_fill_holes(smooth > threshold_otsu(smooth))
    foreground = remove_small_objects(foreground, max_size=max(min_size - 1, 0))
    distance = ndimage.distance_transform_edt(foreground)
    pieces = ndimage.label(foreground)[0]
    peaks = peak_local_max(distance, min_distance=int(min_distance), labels=pieces)
    markers = np.zeros(gray.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground).astype(np.int32)


def best_min_distance(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    candidates: Sequence[int] = (3, 5, 7, 10, 15, 20, 30, 40, 50),
) -> tuple[int, dict[int, float]]:
    """The baseline's `min_distance` with the best mean mSA on `pairs` (ties: the smaller),
    and the mean mSA of every candidate.

    >>> from tilesam.samples import load_sample
    >>> best, table = best_min_distance([load_sample("nuclei")], candidates=(3, 5))
    >>> best in (3, 5), sorted(table)
    (True, [3, 5])
    """
    table = {}
    for d in candidates:
        means, _ = score_method(lambda im, d=d: watershed_baseline(im, d), pairs)
        table[int(d)] = means["msa"]
    best = max(table, key=lambda d: (table[d], -d))
    return best, table
