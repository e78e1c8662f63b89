"""Segment-everything on real nuclei: instance F1, mSA, SA50 and speed, beside the baseline.

Data (``../shared/data``, see its README; Coelho et al., ISBI 2009, and a crop of the 2018
Data Science Bowl):

* ``heldout`` (the figures reported): the 8 Coelho images held out of fine-tuning and of
  every threshold choice (``gnf_dna-1``, ``-8``, ``-12``, ``-14``, ``ic100_dna-3``, ``-9``,
  ``-13``, ``-15``); as rows of their own, the DSB crop (256 x 256, 65 nuclei; note that
  stage 1 of ``tiny``'s training and its instance head's training saw it) and
  ``sample_data/nuclei_heldout.tif`` (512 x 512, 125 nuclei of another DSB field that no
  training saw; its faint nuclei are unlabelled, which costs every method precision);
* ``validation``: the 24 other Coelho images, where the thresholds of
  :class:`tilesam.automatic.AutoSettings` were chosen.

For every image: a session in memory with the default tiling (the model input), its tiles
embedded first (timed apart), then :func:`tilesam.segment_everything` in each of ``--modes``
(grid and prompts for each ``--borders`` choice), timed from the cached embeddings
(``tiles/s``: the image's tiles over that time), and scored
(:mod:`tilesam.evaluate.instances`: F1 at IoU 0.5, SA50, mSA; means over images, as
micro-sam reports them). The classical baseline (Otsu, distance transform,
seeded watershed) runs with its ``min_distance`` chosen on the same images (best mean mSA),
an optimistic reference (:func:`tilesam.evaluate.instance_comparison.compare_instances`, what
``tilesam evaluate --auto`` runs). Prints a table; ``--json`` writes every figure.

Examples
--------
    python benchmarks/bench_auto.py --split heldout --modes grid instance prompts --threads 1
    python benchmarks/bench_auto.py --split validation --modes grid --borders merge follow
    python benchmarks/bench_auto.py --split validation --set nms_iou=0.5 --no-baseline
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import tifffile

from tilesam.automatic import MODES, segment_everything
from tilesam.evaluate.datasets import LabelledImage
from tilesam.evaluate.instance_comparison import BASELINE, compare_instances
from tilesam.evaluate.instances import mean_scores, score_instances
from tilesam.samples import load_sample
from tilesam.segment.session import Session

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "microscopy"
HELDOUT = [f"gnf_dna-{k}" for k in (1, 8, 12, 14)] + [f"ic100_dna-{k}" for k in (3, 9, 13, 15)]


def coelho(names: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image, labels)`` of Coelho images (the first of three equal channels)."""
    folder = DATA / "coelho2009"
    return [
        (n, iio.imread(folder / f"{n}_image.png")[..., 0], iio.imread(folder / f"{n}_labels.png"))
        for n in names
    ]


def datasets(split: str, limit: int | None) -> dict[str, list]:
    """The images of `split`, by dataset: Coelho (and, held out, the DSB crop)."""
    every = sorted(p.name[: -len("_image.png")] for p in (DATA / "coelho2009").glob("*_image.png"))
    names = HELDOUT if split == "heldout" else [n for n in every if n not in HELDOUT]
    out = {"coelho": coelho(names[:limit])}
    if split == "heldout":
        folder = DATA / "dsb2018_crop"
        out["dsb_crop"] = [
            (
                "dsb_crop",
                tifffile.imread(folder / "image.tif"),
                tifffile.imread(folder / "labels.tif"),
            )
        ]
        out["dsb_unseen"] = [("nuclei_heldout", *load_sample("nuclei_heldout"))]
    return out


def embedded(images: list, model: str | None) -> list[tuple[str, Session, np.ndarray, float]]:
    """``(name, session, truth, seconds)``: a session in memory per image, its tiles
    embedded once (timed apart) for every mode to decode from."""
    out = []
    for name, image, truth in images:
        session = Session(image, model)
        start = time.perf_counter()
        session.embed(progress=False)
        out.append((name, session, truth, time.perf_counter() - start))
    return out


def run_mode(sessions: list, mode: str, settings: dict[str, Any]) -> dict[str, Any]:
    """One mode on every embedded image: scores, times and counts."""
    rows, scores = [], []
    for name, session, truth, embed_s in sessions:
        start = time.perf_counter()
        result = segment_everything(session, mode=mode, **settings)
        seconds = time.perf_counter() - start
        scores.append(score_instances(result.labels, truth))
        rows.append(
            {"image": name, **scores[-1].as_dict(), "seconds": seconds,
             "embed_seconds": embed_s, "tiles": session.n_tiles,
             "pixels": int(np.prod(session.grid.slice_shape)), "stats": result.stats}
        )  # fmt: skip
    return _summary(rows, scores)


def run_baseline(images: list) -> dict[str, Any]:
    """The classical baseline at its best `min_distance` on these very images."""
    data = [LabelledImage(image, truth, name) for name, image, truth in images]
    baseline = compare_instances({}, data, progress=False)[BASELINE]
    return {"mean": baseline.mean, "images": baseline.rows(), **baseline.notes}


def _summary(rows: list[dict[str, Any]], scores: list | None = None) -> dict[str, Any]:
    """Means over images (of `scores`, else of the rows' own figures) and speed."""
    if scores is not None:
        means = mean_scores(scores)
    else:
        means = {k: float(np.mean([r[k] for r in rows])) for k in ("f1", "msa", "sa50")}
        means["images"] = len(rows)
    seconds = sum(r["seconds"] for r in rows)
    means["seconds_per_image"] = seconds / len(rows)
    if all("tiles" in r for r in rows):
        means["tiles_per_second"] = sum(r["tiles"] for r in rows) / seconds
        # the image's area in 1024 x 1024 tiles: edge tiles are smaller than a whole one
        means["tile_areas_per_second"] = sum(r["pixels"] for r in rows) / 1024**2 / seconds
    return {"mean": means, "images": rows}


def _combined(results: dict[str, Any], datasets: list[str]) -> dict[str, Any]:
    """Rows "all": every held-out image together, per method."""
    out = {}
    for method in sorted({name.split(" ", 1)[1] for name in results}):
        rows = [r for d in datasets for r in results.get(f"{d} {method}", {}).get("images", [])]
        if rows:
            out[f"all {method}"] = _summary(rows)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=("heldout", "validation"), default="heldout")
    p.add_argument("--modes", nargs="+", default=["instance"], choices=MODES)
    p.add_argument(
        "--borders", nargs="+", default=["merge"], choices=("merge", "follow"),
        help="grid and prompts modes: how objects cut by tile borders become one",
    )  # fmt: skip
    p.add_argument("--model", default=None, help="registry name (default: tiny)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--limit", type=int, default=None, help="at most this many Coelho images")
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a threshold of AutoSettings, e.g. nms_iou=0.5 (repeatable)",
    )  # fmt: skip
    p.add_argument("--no-baseline", action="store_true", help="skip the classical baseline")
    p.add_argument("--json", default=None, help="write every figure here")
    args = p.parse_args(argv)
    settings = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "date": date.today().isoformat(), "machine": platform.platform(),
        "processor": platform.processor(), "torch_threads": torch.get_num_threads(),
        "split": args.split, "settings": settings, "results": {},
    }  # fmt: skip
    data = datasets(args.split, args.limit)
    for dataset, images in data.items():
        sessions = embedded(images, args.model)
        for mode in args.modes:
            for borders in args.borders if mode != "instance" else [None]:
                options = settings if borders is None else {**settings, "borders": borders}
                name = mode if borders is None else f"{mode} ({borders})"
                report["results"][f"{dataset} {name}"] = run_mode(sessions, mode, options)
        if not args.no_baseline:
            report["results"][f"{dataset} baseline"] = run_baseline(images)
    if len(data) > 1:
        report["results"] |= _combined(report["results"], list(data))
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return report


def _print(report: dict[str, Any]) -> None:
    print(f"{report['date']}  {report['machine']}  torch threads {report['torch_threads']}")
    names = ("images", "F1@0.5", "mSA", "SA50", "s/image", "tiles/s", "1024²/s")
    widths = (6, 7, 6, 6, 8, 8, 8)
    print(f"{'method':<28} " + " ".join(f"{n:>{w}}" for n, w in zip(names, widths)))
    for name, res in report["results"].items():
        m = res["mean"]
        rate = f"{m['tiles_per_second']:.2f}" if "tiles_per_second" in m else "-"
        area = f"{m['tile_areas_per_second']:.2f}" if "tile_areas_per_second" in m else "-"
        extra = f"  (min_distance {res['min_distance']})" if "min_distance" in res else ""
        print(
            f"{name:<28} {m['images']:>6} {m['f1']:>7.3f} {m['msa']:>6.3f} {m['sa50']:>6.3f} "
            f"{m['seconds_per_image']:>8.2f} {rate:>8} {area:>8}{extra}"
        )


if __name__ == "__main__":
    main()
