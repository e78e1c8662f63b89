"""Filling the slices between annotated ones: shape-based interpolation (no model) beside the
model's walk, on volumes no rule was chosen on and on real scans.

Every object of the independent generator's held-out seeds (9 to 11:
:mod:`tilesam.evaluate.volume_generator`, CT, 8- and 16-bit microscopy), of the real scans of
``../shared/data/medical`` (the dcmqi CT's liver, spine and heart, the pyradiomics MR
tumours) and of the two sample volumes is annotated on every ``K``-th slice of its extent,
its first and last slices included (``--every``), with

* ``truth``: its true mask there, what an annotator's finished slice holds;
* ``click``: the model's mask from one click at the slice's deepest true pixel, what one
  click per slice gives,

and the slices between are filled by

* ``interpolate``: :func:`tilesam.volumes.walk.propagate_labels` with
  ``method="interpolate"`` (:mod:`tilesam.volumes.interpolate`, no model);
* ``walk``: the model's walk from every annotated slice (``method="prompt"``, the default
  stop rules), the gaps where both walks stopped interpolated (``fill_gaps``, the default);
* ``walk, no fill``: the same walk, ``fill_gaps=False`` (TileSAM before 2026-12-07).

Reports the 3D Dice of the slices between the annotations (the annotated ones are the
annotation, the same for all three) per group and K, and the time per filled slice. Nothing
here has a threshold to choose: the walk's rules are the defaults, chosen elsewhere.

Examples
--------
    python benchmarks/bench_interpolation.py --json bench_interpolation.json
    python benchmarks/bench_interpolation.py --every 4 --annotations truth
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from bench_propagation import HELD_OUT_SEEDS, MEDICAL, REAL, SAMPLES

from tilesam.errors import TileSAMWarning
from tilesam.evaluate.simulated_prompts import center_point
from tilesam.evaluate.volume_generator import FAMILIES, make_volume, write_volume
from tilesam.io import open_image
from tilesam.models.loading import load_model
from tilesam.samples import load_sample, sample_path
from tilesam.segment.session import Session
from tilesam.volumes.propagate import DEFAULT_SLICE_SCALE, session_predictor
from tilesam.volumes.walk import propagate_labels

FILLS = ("interpolate", "walk", "walk, no fill")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, nargs="+", default=[3, 6], help="annotate every K slices")
    p.add_argument("--annotations", nargs="+", default=["truth", "click"],
                   choices=("truth", "click"))  # fmt: skip
    p.add_argument("--model", default="tiny")
    p.add_argument("--json", default="bench_interpolation.json")
    return p.parse_args(argv)


def annotated_slices(truth: np.ndarray, every: int) -> list[int]:
    """Every `every`-th slice of the object's extent, its first and last included, where
    the object is (a fibre may leave the slices for a while)."""
    present = truth.any(axis=(1, 2))
    first, last = (int(z) for z in np.flatnonzero(present)[[0, -1]])
    return [z for z in sorted({*range(first, last + 1, every), last}) if present[z]]


def annotation(session: Session, truth: np.ndarray, z: int, kind: str) -> np.ndarray:
    """The object's mask on slice z: the truth, or the model's answer to one click."""
    if kind == "truth":
        return truth[z]
    return session.segment(points=[center_point(truth[z])], z=z).mask


def fill(session: Session, seeds: dict[int, np.ndarray], shape, how: str) -> tuple[Any, float]:
    """The labels filled between `seeds` by `how` (one of `FILLS`), and the seconds taken."""
    options: dict[str, Any] = {"method": "interpolate"} if how == "interpolate" else {}
    if how == "walk, no fill":
        options["fill_gaps"] = False
    start = time.perf_counter()
    out = propagate_labels(shape, seeds, session_predictor(session),
                           image=session.source.read_slice, **options)  # fmt: skip
    return out.labels > 0, time.perf_counter() - start


def bench_object(session: Session, truth: np.ndarray, every: int, kind: str) -> dict[str, Any]:
    masks = {z: annotation(session, truth, z, kind) for z in annotated_slices(truth, every)}
    seeds = {z: mask.astype(np.uint32) for z, mask in masks.items() if mask.any()}
    slices = sorted(seeds)
    if len(slices) < 2:  # the model found nothing on all but one: nothing to fill between
        return {"annotated": slices, "filled_slices": 0}
    between = np.ones(truth.shape[0], bool)
    between[slices] = False
    between &= np.arange(truth.shape[0]) > slices[0]
    between &= np.arange(truth.shape[0]) < slices[-1]
    row: dict[str, Any] = {"annotated": slices, "filled_slices": int(between.sum())}
    for how in FILLS:
        found, seconds = fill(session, seeds, truth.shape, how)
        a, b = found[between], truth[between]
        row[how] = float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
        row[how + " ms/slice"] = 1000 * seconds / max(int(between.sum()), 1)
    return row


def volumes(workdir: Path):
    """``(group, path, {object: truth}, CT window)`` of every volume benchmarked."""
    for family in FAMILIES:
        for seed in HELD_OUT_SEEDS:
            volume = make_volume(family, seed)
            truths = {f"{o} {what}": volume.labels == o for o, what in volume.names.items()}
            yield f"independent {family}", write_volume(volume, workdir), truths, volume.window
    if MEDICAL.is_dir():
        for name, (image, objects, window, _) in REAL.items():
            truths = {o: open_image(MEDICAL / f).read() > 0 for o, f in objects.items()}
            yield f"real {name}", MEDICAL / image, truths, window
    for name, window in SAMPLES.items():
        labels = load_sample(name)[1]
        truths = {int(o): labels == o for o in np.unique(labels[labels > 0])}
        yield f"sample {name}", sample_path(name), truths, window


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = load_model(args.model, None, None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", TileSAMWarning)
        for group, path, truths, window in volumes(Path(tmp)):
            cache = Path(tmp) / f"{len(rows)}.zarr"
            session = Session(path, model, cache, window=window, slice_scale=DEFAULT_SLICE_SCALE)
            session.embed(progress=False)
            for name, truth in truths.items():
                for every in args.every:
                    for kind in args.annotations:
                        row = bench_object(session, truth, every, kind)
                        rows.append({"group": group, "object": name, "every": every,
                                     "annotations": kind, **row})  # fmt: skip
            print(f"{group}: done", flush=True)
    summary = summarise(rows)
    print(table(summary))
    report = {"model": model.name, "summary": summary, "objects": rows}
    Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"results: {args.json}")


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean Dice of the filled slices per group (the independent families also together),
    K and annotation kind."""
    keys = sorted({(r["group"], r["every"], r["annotations"]) for r in rows})
    keys += sorted({("independent, all", r["every"], r["annotations"]) for r in rows
                    if r["group"].startswith("independent")})  # fmt: skip
    out = []
    for group, every, kind in keys:
        chosen = [r for r in rows if r["every"] == every and r["annotations"] == kind
                  and (r["group"] == group or group == "independent, all"
                       and r["group"].startswith("independent"))]  # fmt: skip
        chosen = [r for r in chosen if r["filled_slices"] > 0]
        if chosen:
            out.append({"group": group, "every": every, "annotations": kind, "n": len(chosen),
                        **{how: float(np.mean([r[how] for r in chosen])) for how in FILLS},
                        "ms/slice": {how: float(np.median([r[how + " ms/slice"] for r in chosen]))
                                     for how in FILLS}})  # fmt: skip
    return out


def table(summary: list[dict[str, Any]]) -> str:
    head = f"{'group':32} {'K':>2} {'annotated':9} {'n':>3} " + " ".join(f"{h:>13}" for h in FILLS)
    lines = [head, "-" * len(head)]
    for s in summary:
        dice = " ".join(f"{s[h]:13.3f}" for h in FILLS)
        lines.append(f"{s['group']:32} {s['every']:2d} {s['annotations']:9} {s['n']:3d} {dice}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
