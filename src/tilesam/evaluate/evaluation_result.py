"""The result of scoring a model (:func:`tilesam.evaluate.scoring.evaluate`): per-object
IoUs, their summary, and the result as JSON.

Means come with a 95% bootstrap confidence interval that resamples whole images (objects
of one image are not independent), or objects when there is a single image. The
interval's resampling is seeded: it is the same for the same rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.io.atomic import atomic_output

# Written into the JSON since results were made in tilesam.evaluate.scoring: kept, so
# that results written before and after read the same.
_FORMAT = "tilesam.evaluate.scoring/1"
_NOC_LEVELS = (0.85, 0.9)


@dataclass
class ObjectResult:
    """Scores for one object.

    ``click_ious[k]`` is the IoU after ``k + 1`` clicks; ``clicks`` holds the
    ``(y, x, label)`` clicks made (fewer than ``n_clicks`` when a mask became
    perfect).
    """

    image: str
    object_id: int
    area: int
    point_iou: float
    box_iou: float
    click_ious: list[float]
    clicks: list[tuple[int, int, int]] = field(default_factory=list)


@dataclass
class EvaluationResult:
    """Per-object scores of one model on one dataset, with summaries.

    Examples
    --------
    >>> result = evaluate(model, dataset, n_clicks=8)  # doctest: +SKIP
    >>> print(result.table())  # doctest: +SKIP
    >>> result.summary["clicks"][2]  # mean IoU after 3 clicks  # doctest: +SKIP
    >>> result.to_json("eval.json"); result.plot("eval.png")  # doctest: +SKIP
    """

    objects: list[ObjectResult]
    n_clicks: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        """Mean IoU for ``point``, ``box`` and ``clicks`` (a list, 1..n clicks), with CIs.

        ``ci95`` holds the 95% bootstrap intervals of those means in the same
        layout; ``noc85``/``noc90`` are the mean number of clicks to reach IoU
        0.85/0.90, an object that never does counting ``n_clicks`` (None for one click:
        every object would count 1, reached or not).
        """
        ious = self.iou_table()
        means, (low, high) = ious.mean(axis=0), self._bootstrap(ious)
        out: dict[str, Any] = {"n_objects": len(self.objects), "n_clicks": self.n_clicks}
        out |= {"point": float(means[0]), "box": float(means[1]), "clicks": means[2:].tolist()}
        ci = np.stack([low, high], axis=1).tolist()
        out["ci95"] = {"point": ci[0], "box": ci[1], "clicks": ci[2:]}
        for level in _NOC_LEVELS:
            noc = self._clicks_to_reach(level).mean() if self.n_clicks > 1 else None
            out[f"noc{round(level * 100)}"] = None if noc is None else float(noc)
        return out

    def iou_table(self) -> np.ndarray:
        """``(n_objects, 2 + n_clicks)``: point, box, then IoU after 1..n clicks."""
        rows = [[o.point_iou, o.box_iou, *o.click_ious] for o in self.objects]
        return np.array(rows, dtype=float).reshape(len(rows), 2 + self.n_clicks)

    def _clicks_to_reach(self, level: float) -> np.ndarray:
        reached = self.iou_table()[:, 2:] >= level
        return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, self.n_clicks)

    def _bootstrap(self, ious: np.ndarray, n_boot: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """2.5 and 97.5 percentiles of the column means over resampled images (or objects)."""
        groups = np.unique([o.image for o in self.objects], return_inverse=True)[1]
        if groups.max(initial=0) == 0:  # a single image: resample its objects
            groups = np.arange(len(ious))
        n_groups = int(groups.max(initial=0)) + 1
        sums = np.zeros((n_groups, ious.shape[1]))
        np.add.at(sums, groups, ious)
        counts = np.bincount(groups, minlength=n_groups)
        pick = np.random.default_rng(0).integers(0, n_groups, (n_boot, n_groups))
        flat = (np.arange(n_boot)[:, None] * n_groups + pick).ravel()
        # how often each group is drawn in each resample
        times = np.bincount(flat, minlength=n_boot * n_groups).reshape(n_boot, n_groups)
        means = (times @ sums) / (times @ counts)[:, None]
        low, high = np.percentile(means, [2.5, 97.5], axis=0)
        return low, high

    def table(self) -> str:
        """A readable text table of the summary, with 95% confidence intervals."""
        from tilesam.evaluate.evaluation_report import summary_table

        return summary_table(self)

    def to_json(self, path: str | Path) -> None:
        """Write the per-object rows, the summary and the run info as JSON."""
        data = {"format": _FORMAT, "n_clicks": self.n_clicks, "info": self.info}
        data |= {"summary": self.summary, "objects": [asdict(o) for o in self.objects]}
        with atomic_output(path) as partial:
            partial.write_text(json.dumps(data, indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> EvaluationResult:
        """Read a result written by :meth:`to_json`."""
        data = json.loads(Path(path).read_text())
        if data.get("format") != _FORMAT:
            raise TileSAMError(f"{path} is not a TileSAM evaluation result ({_FORMAT}).")
        objects = [ObjectResult(**o) for o in data["objects"]]
        for o in objects:
            o.clicks = [tuple(c) for c in o.clicks]
        return cls(objects=objects, n_clicks=data["n_clicks"], info=data["info"])

    def plot(
        self,
        path: str | Path,
        label: str | None = None,
        *,
        others: dict[str, EvaluationResult] | None = None,
    ) -> None:
        """Plot mean IoU against the number of clicks (see :func:`plot_results`).

        ``others`` adds lines for more results; when it already holds this
        result, it is drawn once, under its name there.
        """
        from tilesam.evaluate.evaluation_report import plot_results

        results = {label or str(self.info.get("model") or "model"): self}
        if others and any(r is self for r in others.values()):
            results = others
        elif others:
            results |= others
        plot_results(results, path)
