"""Segment-everything methods side by side on annotated images, beside the classical baseline.

A *method* is any function from an image to instance labels (``tilesam evaluate --auto``
passes one per model and mode of :func:`tilesam.segment_everything`; this layer does not
import it, see ``docs/architecture.md``). :func:`compare_instances` runs every method on
every image (each image read once), times it, scores it with
:func:`~tilesam.evaluate.instances.score_instances` (F1 at IoU 0.5, SA50, mSA) and adds the
classical baseline with its ``min_distance`` chosen on the same images
(:func:`~tilesam.evaluate.instances.best_min_distance`: an optimistic reference). The
result prints as a table and writes JSON (means, each image, the run's notes) and CSV (one
row per method and image).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tilesam.errors import TileSAMError
from tilesam.evaluate.instances import (
    InstanceScores,
    best_min_distance,
    mean_scores,
    score_instances,
    watershed_baseline,
)
from tilesam.evaluate.scoring import LabelledItem
from tilesam.io.atomic import atomic_output

__all__ = ["BASELINE", "InstanceComparison", "MethodScores", "compare_instances"]

#: A method: an image in, instance labels of its spatial shape out (0 background).
Segmenter = Callable[[np.ndarray], np.ndarray]
#: The name of the classical baseline's row.
BASELINE = "baseline"
_FORMAT = "tilesam.evaluate.instance_comparison/1"
_CSV_SCORES = ("f1", "precision", "recall", "sa50", "msa", "n_pred", "n_true")


@dataclass
class MethodScores:
    """One method's scores on a dataset: each image's, and their means."""

    name: str
    images: list[str] = field(default_factory=list)
    scores: list[InstanceScores] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> dict[str, float]:
        """Means over images (:func:`~tilesam.evaluate.instances.mean_scores`), object
        counts and ``seconds_per_image``."""
        return mean_scores(self.scores) | {"seconds_per_image": float(np.mean(self.seconds))}

    def rows(self) -> list[dict[str, Any]]:
        """One dictionary per image: its name, scores and seconds."""
        return [
            {"image": name, **scores.as_dict(), "seconds": seconds}
            for name, scores, seconds in zip(self.images, self.scores, self.seconds, strict=True)
        ]


@dataclass
class InstanceComparison:
    """What :func:`compare_instances` returns: one :class:`MethodScores` per method, the
    baseline last, and notes on the run (settings, models)."""

    methods: list[MethodScores]
    info: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> MethodScores:
        for method in self.methods:
            if method.name == name:
                return method
        raise KeyError(name)

    def table(self) -> str:
        """A text table of the means, one row per method."""
        head = ("images", "F1@0.5", "prec.", "recall", "mSA", "SA50", "found/true", "s/image")
        width = max(len("method"), *(len(m.name) for m in self.methods))
        lines = [f"{'method':<{width}} " + " ".join(f"{h:>10}" for h in head)]
        for method in self.methods:
            m = method.mean
            cells = [f"{m['images']:>10d}"]
            cells += [f"{m[k]:>10.3f}" for k in ("f1", "precision", "recall", "msa", "sa50")]
            cells += [f"{m['n_pred']:>5d}/{m['n_true']:<4d}", f"{m['seconds_per_image']:>10.2f}"]
            extra = "".join(f"  {k} {v}" for k, v in method.notes.items() if np.isscalar(v))
            lines.append(f"{method.name:<{width}} " + " ".join(cells) + extra)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain data: the means, each image's row and the notes, per method."""
        methods = {
            m.name: {"mean": m.mean, "notes": m.notes, "images": m.rows()} for m in self.methods
        }
        return {"format": _FORMAT, "info": self.info, "methods": methods}

    def to_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (atomically)."""
        with atomic_output(path) as partial:
            partial.write_text(json.dumps(self.to_dict(), indent=1, default=float))

    def to_csv(self, path: str | Path) -> None:
        """Write one row per method and image (atomically)."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(("method", "image", *_CSV_SCORES, "seconds"))
        for method in self.methods:
            for row in method.rows():
                writer.writerow((method.name, row["image"], *(row[k] for k in _CSV_SCORES),
                                 row["seconds"]))  # fmt: skip
        with atomic_output(path) as partial:
            partial.write_text(text.getvalue(), encoding="utf-8")


def compare_instances(
    methods: Mapping[str, Segmenter],
    data: Sequence[LabelledItem],
    *,
    baseline: bool = True,
    progress: bool = True,
    info: Mapping[str, Any] | None = None,
) -> InstanceComparison:
    """Score every method (and the classical baseline) on every image of `data`.

    Parameters
    ----------
    methods : mapping of str to callable
        Name to method: ``method(image) -> labels`` (instance labels of the image's spatial
        shape, 0 background). Seconds are timed around each call.
    data : sequence of items with ``image``, ``labels`` and ``name``
        E.g. a :class:`~tilesam.evaluate.datasets.LabelledImageFolder`.
    baseline : bool
        Add the row :data:`BASELINE`: :func:`~tilesam.evaluate.instances.watershed_baseline`
        with the ``min_distance`` of the best mean mSA on `data` (2D images only).
    progress : bool
        A progress bar over the images.
    info : mapping, optional
        Notes on the run kept in the JSON (models, settings).

    Examples
    --------
    >>> from tilesam.evaluate.datasets import LabelledImage
    >>> from tilesam.samples import load_sample
    >>> image, truth = load_sample("nuclei")
    >>> data = [LabelledImage(image, truth.astype("uint32"), "nuclei")]
    >>> result = compare_instances({"truth": lambda im: truth}, data, progress=False)
    >>> [m.name for m in result.methods], result["truth"].mean["f1"]
    (['truth', 'baseline'], 1.0)
    >>> 0 < result["baseline"].mean["msa"] < 1, "min_distance" in result["baseline"].notes
    (True, True)
    """
    if not len(data):
        raise TileSAMError("No image to evaluate on: give at least one image with its labels.")
    if BASELINE in methods and baseline:
        raise TileSAMError(f"A method may not be named {BASELINE!r}: that is the baseline's row.")
    runs = {name: MethodScores(name) for name in methods}
    segmenters = dict(methods)
    if baseline:
        segmenters[BASELINE], runs[BASELINE] = _tuned_baseline(data)
    bar = tqdm(data, total=len(data), disable=not progress, desc="evaluate", unit="image")
    for item in bar:
        for name, segment in segmenters.items():
            start = time.perf_counter()
            labels = segment(item.image)
            seconds = time.perf_counter() - start
            runs[name].images.append(item.name)
            runs[name].scores.append(score_instances(labels, item.labels))
            runs[name].seconds.append(seconds)
    return InstanceComparison(list(runs.values()), dict(info or {}))


def _tuned_baseline(data: Sequence[LabelledItem]) -> tuple[Segmenter, MethodScores]:
    """The baseline at its best `min_distance` on `data`, and its (empty) row with the
    choice in its notes."""
    best, by_distance = best_min_distance(_Pairs(data))
    notes = {"min_distance": best, "msa_by_min_distance": by_distance}
    return (lambda image: watershed_baseline(image, best)), MethodScores(BASELINE, notes=notes)


class _Pairs(Sequence[tuple[np.ndarray, np.ndarray]]):
    """``(image, labels)`` of each item, read on access (a folder's images are not all
    held in memory while the baseline's candidates are tried)."""

    def __init__(self, data: Sequence[LabelledItem]) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        item = self._data[index]
        return item.image, item.labels
