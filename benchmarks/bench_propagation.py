"""Slice-to-slice propagation on the sample volumes: speed, accuracy and memory.

For every ground-truth object of ``ct_volume`` (soft-tissue window) and ``nuclei_volume``:
one click at the deepest pixel of the object's middle slice, propagated through the
volume with :func:`tilesam.propagate_mask`'s pieces. Reports

* ``ms/slice``: wall time of the propagation divided by the slices predicted, with every
  embedding already in the zarr cache (a fresh session over the cache, as when a user
  comes back): reading the tile's embedding, the decoder, upsampling, prompts, stop rules.
  A walk that stops after a slice or two is dominated by first-call costs, so
  ``steady ms/slice`` also times one prediction on every slice of the sample (after one
  warm-up call): the cost per slice of a long walk;
* ``dice``: 3D Dice of the object's propagated labels against its ground truth;
* ``peak MB``: the peak of Python / numpy allocations during the propagation (tracemalloc,
  in a second, identical run: tracing slows the timed one down),
  and the process's peak RSS at the end (model, volume and all included);
* with ``--large``: the propagation's own memory on a 300 x 512 x 512 volume (a CT's size)
  with an ideal predictor standing in for the model (labels, masks, prompts and rules;
  the session adds at most 16 cached tile embeddings, 64 MB for a 256 x 64 x 64 one).

Slices are embedded at most ``--slice-scale`` times enlarged (``Session(slice_scale=...)``, as
:func:`tilesam.propagate_mask` does; ``--slice-scale sam``: SAM's convention, the longest side
fills the model input). The model is the default one (``--model`` / ``--checkpoint`` to
change it); with a randomly initialised checkpoint (e.g.
``tests/data/fixtures/sam1_small_fp16.pth``) the timings hold but the masks, and so the
Dice, are meaningless.

Examples
--------
    python benchmarks/bench_propagation.py --checkpoint tests/data/fixtures/sam1_small_fp16.pth
    python benchmarks/bench_propagation.py --model tiny --json bench_propagation.json
    python benchmarks/bench_propagation.py --model tiny --slice-scale sam
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tilesam.evaluate.simulated_prompts import middle_slice_point
from tilesam.models.loading import load_model
from tilesam.samples import load_sample, sample_path
from tilesam.segment.session import Session
from tilesam.volumes.propagate import DEFAULT_SLICE_SCALE, session_predictor
from tilesam.volumes.walk import METHODS, SlicePrediction, prompt_from_mask, propagate_labels

#: sample name: CT window (None: percentiles of the non-zero voxels)
SAMPLES = {"ct_volume": "soft-tissue", "nuclei_volume": None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="registry name (default: tiny)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file instead")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: fastest)")
    parser.add_argument("--json", default="bench_propagation.json", help="results file")
    parser.add_argument("--large", action="store_true", help="also a 300 x 512 x 512 volume")
    parser.add_argument(
        "--method", default="prompt", choices=METHODS, help="what a slice sends to the next"
    )
    parser.add_argument(
        "--slice-scale",
        type=_scale,
        default=DEFAULT_SLICE_SCALE,
        help=f"largest enlargement of a slice (default {DEFAULT_SLICE_SCALE:g}; 'sam': none)",
    )
    return parser.parse_args(argv)


def _scale(text: str) -> float | None:
    return None if text == "sam" else float(text)


def open_session(name: str, model, cache: Path, scale: float | None) -> Session:
    """A session over a sample as `propagate_mask` opens it at `scale`."""
    return Session(sample_path(name), model, cache, window=SAMPLES[name], slice_scale=scale)


def bench_object(session: Session, truth: np.ndarray, method: str) -> dict[str, Any]:
    """Propagate one object from one click; time, Dice and memory."""
    z, y, x = middle_slice_point(truth)
    first, logits = session.segment_with_logits(points=[(y, x)], z=z)
    predict = session_predictor(session, logits=method == "prompt+logits")
    calls = 0

    def counted(zz, prompt):
        nonlocal calls
        calls += 1
        return predict(zz, prompt)

    def run():
        return propagate_labels(
            truth.shape,
            {z: first.mask.astype(np.uint32)},
            counted,
            states={(1, z): logits},
            image=session.source.read_slice,
            method=method,
        )

    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    # Memory in a second, identical run: tracing every allocation slows the first down.
    calls_timed = calls
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    calls = calls_timed
    found = result.labels > 0
    dice = 2 * np.logical_and(found, truth).sum() / (found.sum() + truth.sum())
    slices = np.flatnonzero(found.any(axis=(1, 2)))
    return {
        "click": [z, y, x],
        "slices_predicted": calls,
        "ms_per_slice": 1000 * seconds / max(calls, 1),
        "dice": float(dice),
        "slices": [int(slices[0]), int(slices[-1])] if slices.size else None,
        "truth_slices": [int(v) for v in np.flatnonzero(truth.any(axis=(1, 2)))[[0, -1]]],
        "stops": [s.reason for s in result.stops],
        "peak_traced_mb": peak / 2**20,
    }


def steady_ms_per_slice(session: Session, truth: np.ndarray, method: str) -> float:
    """One prediction per slice from the prompt of the object's middle slice, warm (with
    ``"prompt+logits"``, each slice also sent the logits of the one before)."""
    prompt = prompt_from_mask(truth[middle_slice_point(truth)[0]], method)
    predict = session_predictor(session, logits=method == "prompt+logits")
    state = predict(0, prompt).state
    start = time.perf_counter()
    for z in range(truth.shape[0]):
        # The state is the logits with "prompt+logits", else None: the prompt stays as made.
        state = predict(z, replace(prompt, mask=state)).state
    return 1000 * (time.perf_counter() - start) / truth.shape[0]


def bench_sample(
    model, name: str, scale: float | None, workdir: Path, method: str
) -> list[dict[str, Any]]:
    volume, truth = load_sample(name)
    cache = workdir / f"{name}.zarr"
    start = time.perf_counter()
    open_session(name, model, cache, scale).embed(progress=False)
    embed_s = time.perf_counter() - start
    rows = []
    for obj in np.unique(truth[truth > 0]).tolist():
        # A fresh session over the full cache: embeddings are read, never computed.
        session = open_session(name, model, cache, scale)
        row = bench_object(session, truth == obj, method)
        rows.append({"sample": name, "object": int(obj), "embed_s_volume": embed_s, **row})
    steady = steady_ms_per_slice(open_session(name, model, cache, scale), truth == 1, method)
    for row in rows:
        row["steady_ms_per_slice"] = steady
    return rows


def bench_large(shape: tuple[int, int, int] = (300, 512, 512)) -> dict[str, Any]:
    """Peak memory of propagating one large object through a CT-sized volume."""
    mid, (cy, cx) = shape[0] // 2, (shape[1] // 2, shape[2] // 2)
    yy, xx = np.ogrid[: shape[1], : shape[2]]

    def ideal(z, prompt):  # an ellipsoid organ filling most of the volume, slice by slice
        radius = 0.3 * shape[1] * np.sqrt(max(1 - ((z - mid) / (0.47 * shape[0])) ** 2, 0))
        return SlicePrediction((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2, 0.95)

    seed = ideal(mid, None).mask.astype(np.uint32)
    tracemalloc.start()
    start = time.perf_counter()
    result = propagate_labels(shape, {mid: seed}, ideal)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "shape": list(shape),
        "peak_traced_mb": peak / 2**20,
        "labels_mb": result.labels.nbytes / 2**20,
        "ms_per_slice_without_model": 1000 * seconds / (shape[0] - 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'sample':14} {'obj':>3} {'slices':>6} {'ms/slice':>8} {'dice':>5} {'peak MB':>7}  stops"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['sample']:14} {r['object']:3d} {r['slices_predicted']:6d} "
            f"{r['ms_per_slice']:8.1f} {r['dice']:5.2f} {r['peak_traced_mb']:7.1f}  "
            + "; ".join(r["stops"])
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = load_model(args.model, args.checkpoint, args.device)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in SAMPLES:
            rows += bench_sample(model, name, args.slice_scale, Path(tmp), args.method)
    per_slice = [r["ms_per_slice"] for r in rows]
    summary = {
        "model": model.name,
        "checkpoint": args.checkpoint,
        "slice_scale": args.slice_scale,
        "method": args.method,
        "device": str(model.device),
        "machine": platform.processor() or platform.machine(),
        "median_ms_per_slice": float(np.median(per_slice)),
        "steady_ms_per_slice": {
            n: next(r["steady_ms_per_slice"] for r in rows if r["sample"] == n) for n in SAMPLES
        },
        "mean_dice": {
            n: float(np.mean([r["dice"] for r in rows if r["sample"] == n])) for n in SAMPLES
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "objects": rows,
    }
    if args.large:
        summary["large"] = bench_large()
    print(table(rows))
    per_sample = ", ".join(
        f"{n}: {summary['steady_ms_per_slice'][n]:.0f} ms/slice steady, "
        f"Dice {summary['mean_dice'][n]:.2f}"
        for n in SAMPLES
    )
    print(
        f"\nmodel {model.name}, slice scale {args.slice_scale or 'sam'}, method "
        f"{args.method}: median "
        f"{summary['median_ms_per_slice']:.0f} ms/slice with cached "
        f"embeddings; {per_sample}; peak RSS {summary['peak_rss_mb']:.0f} MB"
    )
    if args.large:
        large = summary["large"]
        print(
            f"{large['shape']} volume: propagation peak {large['peak_traced_mb']:.0f} MB "
            f"(labels {large['labels_mb']:.0f} MB), {large['ms_per_slice_without_model']:.1f} "
            "ms/slice without the model"
        )
    Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
