"""Score a promptable model on annotated images with simulated, deterministic prompts.

For every object (an id in the label image) three protocols are run:

- ``point``: one positive click at the object's most interior pixel
  (:func:`~tilesam.evaluate.simulated_prompts.center_point`), three candidate masks,
  the one with the highest predicted IoU is taken;
- ``box``: the object's bounding box, one mask;
- ``clicks``: interactive correction as in SAM's evaluation. Click 1 is the
  ``point`` protocol; each further click goes into the largest error region of
  the current mask (:func:`~tilesam.evaluate.simulated_prompts.corrective_click`), and
  the decoder gets all clicks so far plus the previous mask's low-res logits,
  returning one mask. When a mask is perfect, later clicks keep its IoU.

Objects with fewer than :data:`MIN_OBJECT_PIXELS` pixels are skipped and
counted. Means come with a 95% bootstrap confidence interval that resamples
whole images (objects of one image are not independent), or objects when
there is a single image. The interval's resampling is seeded: it is the same
for the same rows.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from tilesam.errors import TileSAMError
from tilesam.evaluate.simulated_prompts import box_from_mask, center_point, corrective_click
from tilesam.io.atomic import atomic_output

__all__ = [
    "MIN_OBJECT_PIXELS",
    "EvaluationResult",
    "ObjectResult",
    "compare",
    "evaluate",
    "plot_results",
]

MIN_OBJECT_PIXELS = 10
"""Objects smaller than this (in pixels) are skipped: a click cannot be simulated fairly."""

_FORMAT = "tilesam.evaluate.scoring/1"
_NOC_LEVELS = (0.85, 0.9)


class PromptableModel(Protocol):
    """What :func:`evaluate` needs from a model (:class:`tilesam.SamModel` has it)."""

    def embed(self, image: np.ndarray) -> Any: ...

    def predict(self, embedding: Any, **prompts: Any) -> Any: ...


class LabelledItem(Protocol):
    """One dataset item: an image, its instance labels (0 = background) and a name."""

    image: np.ndarray
    labels: np.ndarray
    name: str


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
        ious = self._iou_table()
        means, (low, high) = ious.mean(axis=0), self._bootstrap(ious)
        out: dict[str, Any] = {"n_objects": len(self.objects), "n_clicks": self.n_clicks}
        out |= {"point": float(means[0]), "box": float(means[1]), "clicks": means[2:].tolist()}
        ci = np.stack([low, high], axis=1).tolist()
        out["ci95"] = {"point": ci[0], "box": ci[1], "clicks": ci[2:]}
        for level in _NOC_LEVELS:
            noc = self._clicks_to_reach(level).mean() if self.n_clicks > 1 else None
            out[f"noc{round(level * 100)}"] = None if noc is None else float(noc)
        return out

    def _iou_table(self) -> np.ndarray:
        """``(n_objects, 2 + n_clicks)``: point, box, then IoU after 1..n clicks."""
        rows = [[o.point_iou, o.box_iou, *o.click_ious] for o in self.objects]
        return np.array(rows, dtype=float).reshape(len(rows), 2 + self.n_clicks)

    def _clicks_to_reach(self, level: float) -> np.ndarray:
        reached = self._iou_table()[:, 2:] >= level
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
        summary = self.summary
        lines = [_header(self), f"{'prompt':<10} {'mean IoU':>9}   95% CI (bootstrap)"]
        ci = [summary["ci95"]["point"], summary["ci95"]["box"], *summary["ci95"]["clicks"]]
        for name, column, mean in _rows(summary):
            low, high = ci[column]
            lines.append(f"{name:<10} {mean:>9.3f}   [{low:.3f}, {high:.3f}]")
        lines.append(f"{'NoC@85':<10} {_number(summary['noc85'], 9, '.2f')}")
        lines.append(f"{'NoC@90':<10} {_number(summary['noc90'], 9, '.2f')}")
        return "\n".join(lines)

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
        results = {label or str(self.info.get("model") or "model"): self}
        if others and any(r is self for r in others.values()):
            results = others
        elif others:
            results |= others
        plot_results(results, path)


def _header(result: EvaluationResult) -> str:
    info = result.info
    n_images = len({o.image for o in result.objects})
    return (
        f"model {info.get('model')!r}: {len(result.objects)} objects in {n_images} image(s) "
        f"({info.get('n_skipped_small', 0)} objects under "
        f"{info.get('min_object_pixels', MIN_OBJECT_PIXELS)} px skipped)"
    )


def _rows(summary: dict[str, Any]) -> list[tuple[str, int, float]]:
    """``(row name, iou-table column, mean)`` for point, box and each click count."""
    rows = [("point", 0, summary["point"]), ("box", 1, summary["box"])]
    for k, mean in enumerate(summary["clicks"], start=1):
        rows.append((f"{k} click" + ("s" if k > 1 else ""), k + 1, mean))
    return rows


def compare(results: dict[str, EvaluationResult]) -> str:
    """A side-by-side table of mean IoU (and NoC) for several results.

    A note is added when the results were not computed on the same objects,
    since their means are then not comparable.

    Examples
    --------
    >>> print(compare({"vit_b": base, "fine-tuned": tuned}))  # doctest: +SKIP
    """
    if not results:
        raise TileSAMError("compare needs at least one result.")
    names = list(results)
    width = max(10, *(len(n) for n in names))
    lines = ["prompt     " + " ".join(f"{n:>{width}}" for n in names)]
    longest = max(results.values(), key=lambda r: r.n_clicks)
    for row_name, column, _ in _rows(longest.summary):
        cells = [_cell(r, column, width) for r in results.values()]
        lines.append(f"{row_name:<10} " + " ".join(cells))
    for key, form in (("noc85", ".2f"), ("noc90", ".2f"), ("n_objects", "d")):
        cells = [_number(r.summary[key], width, form) for r in results.values()]
        lines.append(f"{key:<10} " + " ".join(cells))
    if len({frozenset((o.image, o.object_id) for o in r.objects) for r in results.values()}) > 1:
        lines.append("note: the results cover different objects; their means are not comparable.")
    return "\n".join(lines)


def _number(value: float | None, width: int, form: str) -> str:
    """`value` right-aligned in `width`, "–" where there is none (NoC after one click).

    >>> _number(None, 5, ".2f"), _number(1.5, 5, ".2f")
    ('    –', ' 1.50')
    """
    return f"{'–':>{width}}" if value is None else f"{value:>{width}{form}}"


def _cell(result: EvaluationResult, column: int, width: int) -> str:
    if column >= 2 + result.n_clicks:
        return f"{'-':>{width}}"
    return f"{result._iou_table()[:, column].mean():>{width}.3f}"


def plot_results(results: dict[str, EvaluationResult], path: str | Path) -> None:
    """Plot mean IoU against clicks, one line per result; boxes as dashed levels.

    Uses matplotlib's Agg canvas directly, leaving the global backend alone.

    Examples
    --------
    >>> plot_results({"vit_b": base, "fine-tuned": tuned}, "clicks.png")  # doctest: +SKIP
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise TileSAMError("Plotting needs matplotlib: pip install matplotlib") from err
    fig = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, result in results.items():
        summary = result.summary
        clicks = np.arange(1, result.n_clicks + 1)
        (line,) = ax.plot(clicks, summary["clicks"], marker="o", label=f"{name}: clicks")
        ax.axhline(summary["box"], color=line.get_color(), ls="--", label=f"{name}: box")
    ax.set_xticks(range(1, max(r.n_clicks for r in results.values()) + 1))
    ax.set(xlabel="number of clicks", ylabel="mean IoU", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    with atomic_output(path) as partial:
        fig.savefig(partial, dpi=120, format=Path(path).suffix.lstrip(".") or "png")


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.count_nonzero(pred | gt)
    return float(np.count_nonzero(pred & gt) / union) if union else 1.0


def _select_objects(
    labels: np.ndarray, name: str, limit: int | None, seed: int
) -> tuple[list[tuple[int, int]], int]:
    """``[(object id, area)]`` to evaluate and the number skipped as too small.

    With ``limit``, a random subset seeded by ``seed`` and the image name, so
    the choice does not depend on the dataset's order or split.
    """
    ids, areas = np.unique(labels, return_counts=True)
    keep = ids != 0
    ids, areas = ids[keep], areas[keep]
    small = areas < MIN_OBJECT_PIXELS
    ids, areas = ids[~small], areas[~small]
    if limit is not None and len(ids) > limit:
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        chosen = np.sort(rng.choice(len(ids), limit, replace=False))
        ids, areas = ids[chosen], areas[chosen]
    return [(int(i), int(a)) for i, a in zip(ids, areas, strict=True)], int(small.sum())


def _evaluate_object(
    model: PromptableModel, embedding: Any, gt: np.ndarray, n_clicks: int
) -> tuple[float, float, list[float], list[tuple[int, int, int]]]:
    """Point IoU, box IoU, IoU after 1..n clicks, and the clicks made."""
    box = model.predict(embedding, box=box_from_mask(gt), multimask=False)
    box_iou = _iou(box.mask(0), gt)
    y, x = center_point(gt)
    first = model.predict(embedding, points=np.array([[y, x]]), labels=np.array([1]))
    best = int(np.argmax(first.scores))
    # Logits first: mask() then reads them instead of upscaling a window of its own.
    logits, mask = first.low_res_logits[best], first.mask(best)
    clicks, ious = [(y, x, 1)], [_iou(mask, gt)]
    while len(ious) < n_clicks:
        click = corrective_click(mask, gt)
        if click is None:  # perfect: further clicks change nothing
            ious += [ious[-1]] * (n_clicks - len(ious))
            break
        clicks.append(click)
        points = np.array([c[:2] for c in clicks])
        res = model.predict(
            embedding,
            points=points,
            labels=np.array([c[2] for c in clicks]),
            mask_input=logits,
            multimask=False,
        )
        logits, mask = res.low_res_logits[0], res.mask(0)
        ious.append(_iou(mask, gt))
    return ious[0], box_iou, ious, clicks


def _check_item(item: LabelledItem) -> None:
    labels = np.asarray(item.labels)
    if labels.ndim != 2 or np.shape(item.image)[:2] != labels.shape:
        raise TileSAMError(
            f"{item.name}: evaluate needs 2D images with labels of the same (H, W), got image "
            f"{np.shape(item.image)} and labels {labels.shape}. Evaluate volumes slice by slice."
        )


def _evaluate_image(
    model: PromptableModel, item: LabelledItem, n_clicks: int, limit: int | None, seed: int
) -> tuple[list[ObjectResult], int]:
    _check_item(item)
    labels = np.asarray(item.labels)
    objects, n_small = _select_objects(labels, item.name, limit, seed)
    if not objects:
        return [], n_small
    embedding = model.embed(item.image)  # once per image: every prompt reuses it
    rows = []
    for object_id, area in objects:
        scores = _evaluate_object(model, embedding, labels == object_id, n_clicks)
        rows.append(ObjectResult(item.name, object_id, area, *scores))
    return rows, n_small


def evaluate(
    model: PromptableModel,
    dataset: Sequence[LabelledItem],
    *,
    n_clicks: int = 8,
    max_objects_per_image: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> EvaluationResult:
    """Score ``model`` on every object of ``dataset`` with point, box and click prompts.

    Parameters
    ----------
    model
        A :class:`tilesam.SamModel` (anything with its ``embed``/``predict``).
    dataset
        Items with ``image`` (2D or RGB), ``labels`` (0 = background) and
        ``name``, e.g. a :class:`tilesam.evaluate.datasets.LabelledImageFolder`.
    n_clicks : int
        Clicks of the interactive protocol (IoU recorded after each).
    max_objects_per_image : int, optional
        Evaluate at most this many objects per image, chosen at random from
        ``seed`` and the image name. All objects by default.
    seed : int
        Only for that choice: the prompts themselves are deterministic.
    progress : bool
        Show a progress bar over the images.

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> import tilesam
    >>> from tilesam.evaluate.datasets import LabelledImage
    >>> from tilesam.samples import load_sample
    >>> image, labels = load_sample("nuclei")
    >>> data = [LabelledImage(image, labels, "nuclei")]
    >>> result = evaluate(tilesam.load_model(), data, n_clicks=2, max_objects_per_image=5,
    ...                   progress=False)
    >>> len(result.objects), bool(result.summary["box"] > 0.5)
    (5, True)
    """
    if n_clicks < 1:
        raise TileSAMError(f"n_clicks must be at least 1, got {n_clicks}.")
    rows: list[ObjectResult] = []
    n_small = 0
    bar = tqdm(dataset, total=len(dataset), disable=not progress, desc="evaluate", unit="image")
    for item in bar:
        image_rows, skipped = _evaluate_image(model, item, n_clicks, max_objects_per_image, seed)
        rows += image_rows
        n_small += skipped
        bar.set_postfix(objects=len(rows))
    if not rows:
        raise TileSAMError(
            f"No object of at least {MIN_OBJECT_PIXELS} pixels in the dataset: nothing to score."
        )
    info = {
        "model": getattr(model, "name", type(model).__name__),
        "n_images": len(dataset),
        "n_skipped_small": n_small,
        "min_object_pixels": MIN_OBJECT_PIXELS,
        "max_objects_per_image": max_objects_per_image,
        "seed": seed,
    }
    return EvaluationResult(objects=rows, n_clicks=n_clicks, info=info)
