"""Evaluation results for people: a text table of one result, a side-by-side table of
several (:func:`compare`), and mean IoU against clicks as a plot (:func:`plot_results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tilesam.errors import TileSAMError
from tilesam.evaluate.scoring import MIN_OBJECT_PIXELS
from tilesam.io.atomic import atomic_output

if TYPE_CHECKING:
    from tilesam.evaluate.evaluation_result import EvaluationResult


def summary_table(result: EvaluationResult) -> str:
    """A readable text table of `result`'s summary, with 95% confidence intervals
    (:meth:`EvaluationResult.table`)."""
    summary = result.summary
    lines = [_header(result), f"{'prompt':<10} {'mean IoU':>9}   95% CI (bootstrap)"]
    ci = [summary["ci95"]["point"], summary["ci95"]["box"], *summary["ci95"]["clicks"]]
    for name, column, mean in _rows(summary):
        low, high = ci[column]
        lines.append(f"{name:<10} {mean:>9.3f}   [{low:.3f}, {high:.3f}]")
    lines.append(f"{'NoC@85':<10} {_number(summary['noc85'], 9, '.2f')}")
    lines.append(f"{'NoC@90':<10} {_number(summary['noc90'], 9, '.2f')}")
    return "\n".join(lines)


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
    return f"{result.iou_table()[:, column].mean():>{width}.3f}"


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
