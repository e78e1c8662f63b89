"""A click's cost against the size of the object: small and large objects, ``vit_t``,
``vit_b`` and ``tiny``, the NumPy predictor (a session reopened on its cache) and torch (a
session given the loaded model), on a tiled 2048 x 2048 image with a complete cache.

Random full-size checkpoints (seeded, as ``bench_large_image.py`` makes ``tiny``'s) give
image-sized masks: a *large* object is a click at a random place (its mask fills the tile);
a *small* one is a box of 30-60 pixels a side, whose mask is clipped to it (the decoder's
object around it is as large as ever, which is what makes the case hard). Clicks are
answered in one tile (``max_tiles=1``, as micro-sam answers a tiled click: the figure
issue 29 compares), or stitched across tiles with ``--max-tiles 16``. The full-resolution
mask is delivered either way (``SegmentResult.window``).

``--baseline-src DIR`` times the same clicks with another tree's ``src`` too (e.g. HEAD's:
``git archive HEAD src | tar -x -C /tmp/head``), alternating with this tree round by round
in fresh processes, so that both are measured in one sitting; the table gives both, their
ratio and how many of the clicks' full-resolution masks are the same in both trees (with
the share of equal pixels over all of them). micro-sam is not needed: issue 29's recorded
86 ms (micro-sam 1.8.14, a large object, ``vit_t``) is printed as context only.

Examples
--------
    python benchmarks/bench_click_size.py --json bench_click_size.json
    python benchmarks/bench_click_size.py --baseline-src /tmp/head/src --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MICRO_SAM_LARGE_MS = 86.0  # issue 29: micro-sam 1.8.14, vit_t, a large object, this VM
SIZE = 2048
MODELS = ("vit_t", "vit_b", "tiny")
PREDICTORS = ("numpy", "torch")
OBJECTS = ("small", "large")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=int, default=12, help="timed clicks per case")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per tree")
    parser.add_argument("--max-tiles", type=int, default=1, help="1: one tile; 16: stitched")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--baseline-src", default=None, help="another tree's src to time too")
    parser.add_argument("--workdir", default=None, help="image, checkpoints, caches (kept)")
    parser.add_argument("--json", default="bench_click_size.json", help="results file")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # internal
    return parser.parse_args(argv)


# -- inputs ------------------------------------------------------------------------------------
def prepare(workdir: Path, models: list[str]) -> None:
    """The image, a random checkpoint per model and its complete cache (kept for reruns)."""
    import tifffile
    import torch

    from tilesam.models.registry import ARCHITECTURES, build_sam
    from tilesam.segment.session import Session

    image = workdir / "image.tif"
    if not image.exists():
        yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
        blobs = np.sin(yy / 37.0) * np.cos(xx / 53.0) > 0.6
        noise = np.random.default_rng(0).normal(0, 60, blobs.shape)
        pixels = (1000 + 1500 * blobs + noise).clip(0, 65535).astype(np.uint16)
        tifffile.imwrite(image, pixels, tile=(512, 512), compression="zlib")
    for name in models:
        checkpoint, cache = workdir / f"{name}_random.pt", workdir / f"cache_{name}.zarr"
        if not checkpoint.exists():
            torch.manual_seed(0)
            torch.save(build_sam(ARCHITECTURES[name]).state_dict(), checkpoint)
        session = Session(image, name, cache, checkpoint=checkpoint)
        if session.n_done < session.n_tiles:
            session.embed()


def prompts(kind: str, n: int) -> list[dict[str, Any]]:
    """`n` prompts: clicks anywhere (large) or boxes of 30-60 pixels (small)."""
    rng = np.random.default_rng(1)
    if kind == "large":
        return [{"points": [tuple(int(v) for v in p)]} for p in rng.integers(0, SIZE, (n, 2))]
    corners, sides = rng.integers(40, SIZE - 100, (n, 2)), rng.integers(30, 61, (n, 2))
    return [{"box": tuple(int(v) for v in (*c, *(c + s)))} for c, s in zip(corners, sides)]


# -- one tree's timings (a fresh process) ------------------------------------------------------
def phase(spec: dict[str, Any]) -> dict[str, Any]:
    """Median click times of every case, with the tree on ``sys.path``; with
    ``spec["masks"]``, every click's full-resolution mask is saved there (bit-packed)."""
    import tilesam
    from tilesam.segment.session import Session

    workdir, out = Path(spec["workdir"]), {"tilesam": str(Path(tilesam.__file__).parent)}
    masks: dict[str, np.ndarray] = {}
    for name in spec["models"]:
        checkpoint, cache = workdir / f"{name}_random.pt", workdir / f"cache_{name}.zarr"
        cached = Session(workdir / "image.tif", name, cache, checkpoint=checkpoint)
        sessions = {"numpy": cached}
        sessions["torch"] = Session(workdir / "image.tif", cached.model, cache)
        for predictor, session in sessions.items():
            for kind in OBJECTS:
                case = f"{name}/{predictor}/{kind}"
                out[case], masks[case] = time_clicks(session, kind, spec)
    if spec.get("masks"):
        np.savez_compressed(spec["masks"], **{k.replace("/", "."): v for k, v in masks.items()})
    return out


def time_clicks(session: Any, kind: str, spec: dict[str, Any]) -> tuple[dict, np.ndarray]:
    """Median and p90 ms of the clicks of `kind`, after one warm-up pass over them, and
    their full-resolution masks, bit-packed ``(clicks, H * W / 8)``."""
    import torch

    torch.set_num_threads(spec["threads"])
    chosen = prompts(kind, spec["clicks"])
    for prompt in chosen:  # warm-up: embeddings read, graphs traced, caches filled
        session.segment(max_tiles=spec["max_tiles"], **prompt)
    times, areas, masks = [], [], []
    for prompt in chosen:
        start = time.perf_counter()
        result = session.segment(max_tiles=spec["max_tiles"], **prompt)
        times.append(1e3 * (time.perf_counter() - start))
        areas.append(result.area)
        masks.append(np.packbits(result.mask))
    timings = {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "median_area": float(np.median(areas)),
    }
    return timings, np.stack(masks)


def compare_masks(first: Path, second: Path) -> dict[str, dict[str, float]]:
    """Per case, how many clicks gave the same mask in both trees and the share of equal
    pixels over all of them."""
    out = {}
    with np.load(first) as a, np.load(second) as b:
        for key in a.files:
            x, y = np.unpackbits(a[key], axis=1), np.unpackbits(b[key], axis=1)
            out[key.replace(".", "/")] = {
                "identical_masks": int((x == y).all(axis=1).sum()),
                "masks": len(x),
                "equal_pixels": float((x == y).mean()),
                "differing_pixels": int((x != y).sum()),
            }
    return out


def run_tree(src: str | None, spec: dict[str, Any]) -> dict[str, Any]:
    """:func:`phase` in a fresh interpreter with `src` (None: this tree) first on the path."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(spec["threads"])
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--phase", json.dumps(spec)]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- driver --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.phase:
        print(json.dumps(phase(json.loads(args.phase))))
        return {}
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "tilesam-bench-click-size")
    workdir.mkdir(parents=True, exist_ok=True)
    prepare(workdir, args.models)
    spec = {
        "workdir": str(workdir),
        "models": args.models,
        "clicks": args.clicks,
        "max_tiles": args.max_tiles,
        "threads": args.threads,
    }
    trees = {"this tree": None}
    if args.baseline_src:
        trees = {"baseline": str(Path(args.baseline_src).resolve()), **trees}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    masks = {name: workdir / f"masks_{i}.npz" for i, name in enumerate(trees)}
    for round_ in range(args.rounds):  # alternate: the machine's noise falls on all alike
        for name, src in trees.items():
            saved = {"masks": str(masks[name])} if round_ == 0 else {}
            runs[name].append(run_tree(src, {**spec, **saved}))
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "micro_sam_large_ms_issue_29": MICRO_SAM_LARGE_MS,
        **spec,
        "trees": {name: merge(r) for name, r in runs.items()},
    }
    if len(trees) == 2:
        results["masks_compared"] = compare_masks(*masks.values())
    print_table(results)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.json}")
    return results


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per case, the median over rounds of the rounds' medians."""
    out: dict[str, Any] = {"tilesam": rounds[0]["tilesam"]}
    for case in (k for k in rounds[0] if k != "tilesam"):
        out[case] = {
            key: float(np.median([r[case][key] for r in rounds])) for key in rounds[0][case]
        }
    return out


def print_table(results: dict[str, Any]) -> None:
    trees = results["trees"]
    names = list(trees)
    print(
        f"{results['machine']}, load {results['load_average']}, {results['threads']} thread(s), "
        f"max_tiles={results['max_tiles']}, {results['clicks']} clicks per case; micro-sam not "
        f"installed: its {MICRO_SAM_LARGE_MS:.0f} ms (issue 29, large object, vit_t) is context"
    )
    header = ["case", "median area"] + [f"{n} ms (p90)" for n in names]
    if len(names) == 2:
        header.append("ratio")
    rows = [header]
    for case in (k for k in trees[names[-1]] if k != "tilesam"):
        row = [case, f"{trees[names[-1]][case]['median_area']:.0f}"]
        for name in names:
            r = trees[name][case]
            row.append(f"{r['median_ms']:.1f} ({r['p90_ms']:.1f})")
        if len(names) == 2:
            ratio = trees[names[1]][case]["median_ms"] / trees[names[0]][case]["median_ms"]
            row.append(f"{ratio:.2f}x")
        rows.append(row)
    if "masks_compared" in results:
        header.append("same masks (pixels)")
        for row in rows[1:]:
            same = results["masks_compared"][row[0]]
            equal = f"{100 * same['equal_pixels']:.4f} %"
            row.append(f"{same['identical_masks']}/{same['masks']} ({equal})")
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
