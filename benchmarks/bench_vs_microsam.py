"""TileSAM against micro-sam on the same work: the same random official-format checkpoint,
the same images, the same prompts, the same thread count (issue 29).

micro-sam runs in its own Python (a throwaway environment with ``micro_sam``, the official
``segment_anything`` and MobileSAM's ``mobile_sam``: nothing of it is a TileSAM dependency),
named by ``--microsam-python`` or ``$TILESAM_MICROSAM_PYTHON``; without one the benchmark
prints why and skips. Every phase of either tool runs in a fresh interpreter (this script
with an internal flag: the micro-sam side never imports tilesam, this side never imports
micro_sam; they exchange JSON). Inputs, made once in ``--workdir``:

* the checkpoint: a randomly initialised model built by the official code in micro-sam's
  environment (``mobile_sam.sam_model_registry["vit_t"]()``, ``segment_anything``'s
  ``"vit_b"``; ``torch.manual_seed(0)``), saved with ``torch.save(model.state_dict())``;
  TileSAM loads the same file (``Session(image, "vit_t", checkpoint=...)``), micro-sam with
  ``micro_sam.util.get_sam_model(model_type=..., checkpoint_path=...)``;
* a 2048 x 2048 uint16 tiled TIFF (``bench_click_size.py``'s blobs and noise) and a
  16 x 512 x 512 uint16 TIFF volume, read by each tool as its users read them
  (``micro_sam.util.load_image_data``; TileSAM opens the files lazily).

The work, per model, each step timed as wall time inside its process (imports apart):

``embed 2D``
    Tiled embedding of the 2048² image into a fresh zarr cache: TileSAM
    ``Session(tile_size=1024, halo=64).embed()``, micro-sam
    ``precompute_image_embeddings(tile_shape=(896, 896), halo=(64, 64), save_path=...)``. Both
    make 3 x 3 = 9 encoder passes of 1024²: TileSAM's tiles are 1024² windows at stride 896
    (the last row and column shifted to end at the border), micro-sam's are 896² blocks
    grown by the halo (outer 960, 1024 or 320 pixels a side, each resized so its longest
    side fills the model input). The model's loading is timed apart. TileSAM embeds in its
    default precision (``"auto"``: bfloat16 on a CPU with AMX, see
    :mod:`tilesam.models.precision`); where that is not float32, the same embedding in
    float32 is timed beside it (a row of its own). micro-sam computes in float32.
``reopen``
    In a new process: the session over the complete cache (TileSAM: no model loaded, the
    cache's decoder weights answer in NumPy), against ``get_sam_model`` +
    ``precompute_image_embeddings`` on the existing zarr (micro-sam loads the whole model;
    it checks the cache by hashing the whole image).
``clicks``
    20 prompts of each kind, timed after a warm-up pass over them (median and p90): *large*
    objects, one positive click (``segment_from_points``), and *small* ones, a box of 30-60
    pixels (``segment_from_box``), as in ``bench_click_size.py``. The official code's random
    initialisation gives speckled masks, and TileSAM keeps the part connected to the click
    (micro-sam every pixel above the threshold), so a random click is rarely a large object
    for TileSAM: the large objects' clicks are the first 20 of a seeded sequence of random
    points whose TileSAM mask covers at least a quarter of a tile (chosen once, kept in the
    workdir; the same points go to micro-sam, whose masks there are as large). TileSAM
    answers in one tile (``max_tiles=1``, as micro-sam does), decoded by NumPy (the
    reopened session) and by torch (a session given the loaded model, as the napari plugin
    opens it). Differences in the work: micro-sam reads and decompresses the tile's float32
    embedding on every prompt and returns a full ``(1, H, W)`` mask; TileSAM keeps recent
    tiles' embeddings in memory, returns the mask as a window (``SegmentResult.window``),
    cleans it up (the connected part) and clips a box's mask to the box.
``cache``
    Bytes on disk of each tool's cache folder (TileSAM's keeps a copy of the decoder's
    weights besides the embeddings, so that clicks need no model).
``embed 3D``
    The volume into a fresh cache, one encoder pass per slice for both: micro-sam's
    ``precompute_image_embeddings(ndim=3)`` (untiled), TileSAM's ``Session.embed()`` (one
    1024 tile a slice; a 512² slice is enlarged 2x, as SAM's convention does).
``propagation``
    From the same seed (a disc of radius 40 on the middle slice) through the whole volume
    up and down, every stop rule off (micro-sam ``iou_threshold=0``; TileSAM
    ``StopRules(min_area=0, min_overlap=0, max_growth=inf, min_score_ratio=None,
    min_contrast=None)``; only an empty mask ends TileSAM's walk), after a warm-up walk,
    in ms per predicted slice with the embeddings cached: micro-sam's
    ``segment_mask_in_volume`` over ``precompute_image_embeddings``' in-memory features
    (its default, ``lazy_loading=False``: all slices read into RAM when the cache is
    reopened), against :func:`tilesam.propagate_mask` on a reopened session (embeddings
    read from the cache slice by slice, NumPy decoder; a second row: a session given the
    loaded model, torch decoder, as micro-sam decodes). Two pairings: ``box`` against
    ``box`` (the same prompt: the previous mask's bounding box; TileSAM adds a small margin)
    and each tool's default (micro-sam annotator's ``single_point`` against TileSAM's
    ``prompt``, a box and one or two points).

Intensities differ by design: micro-sam scales each tile (each slice) by its own min / max,
TileSAM the whole image (volume) by percentiles; that changes values, not the work.
``--threads`` (default 1) sets ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` in both.
With ``--rounds N`` every phase runs N times, alternating the tools, and the table gives
medians. ``vit_b`` is slow on a CPU: ``--vit-b-size`` (default 1792: 2 x 2 tiles for both
tools) and ``--vit-b-slices`` (default 4) shrink its inputs.

Examples
--------
    python benchmarks/bench_vs_microsam.py --microsam-python /tmp/venv-official/bin/python \\
        --json bench_vs_microsam.json
    TILESAM_MICROSAM_PYTHON=/tmp/venv-official/bin/python \\
        python benchmarks/bench_vs_microsam.py --models vit_t vit_b --rounds 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("vit_t", "vit_b")
KINDS = ("large", "small")
TOOLS = ("tilesam", "micro_sam")
STEPS = ("embed2d", "clicks", "embed3d", "propagate")
#: propagation pairings: name -> (TileSAM method, micro-sam projection)
PAIRINGS = {"box": ("box", "box"), "defaults": ("prompt", "single_point")}
SEED_RADIUS = 40
CANDIDATES = 400  # random clicks tried for large objects
LARGE = 0.25  # a large object's mask covers at least this fraction of a tile
VOLUME = {"axes": "zyx"}  # a TIFF of 3 or 4 pages would otherwise read as RGB(A)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--microsam-python",
        default=os.environ.get("TILESAM_MICROSAM_PYTHON"),
        help="a Python with micro_sam (default: $TILESAM_MICROSAM_PYTHON; none: skip)",
    )
    parser.add_argument("--models", nargs="+", default=["vit_t"], choices=MODELS)
    parser.add_argument("--size", type=int, default=2048, help="2D image side (vit_t)")
    parser.add_argument("--slices", type=int, default=16, help="volume slices (vit_t)")
    parser.add_argument("--slice-size", type=int, default=512, help="volume slice side")
    parser.add_argument("--vit-b-size", type=int, default=1792, help="2D image side (vit_b)")
    parser.add_argument("--vit-b-slices", type=int, default=4, help="volume slices (vit_b)")
    parser.add_argument("--tile", type=int, default=1024, help="TileSAM tile (model input)")
    parser.add_argument("--halo", type=int, default=64, help="halo, both tools")
    parser.add_argument("--clicks", type=int, default=20, help="timed prompts per kind")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    parser.add_argument(
        "--cache-encoding", default="float16", choices=("float16", "q8"), help="TileSAM's"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of every phase")
    parser.add_argument("--vit-b-rounds", type=int, default=1, help="rounds (vit_b)")
    parser.add_argument("--workdir", default=None, help="inputs, checkpoints, caches (kept)")
    parser.add_argument("--json", default="bench_vs_microsam.json", help="results file")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # internal
    return parser.parse_args(argv)


# -- shared by both sides (numpy and the standard library only) -----------------------------
def candidate_points(size: int, n: int = CANDIDATES) -> list[list[int]]:
    """Random clicks on a `size`² image, from which the large objects' are chosen."""
    return np.random.default_rng(1).integers(0, size, (n, 2)).tolist()


def prompts(kind: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompts of `kind`: the chosen clicks on large objects, or boxes of 30-60 px."""
    if kind == "large":
        return [{"points": [point]} for point in spec["large_points"]]
    n, size = spec["clicks"], spec["size"]
    rng = np.random.default_rng(2)
    corners, sides = rng.integers(40, size - 100, (n, 2)), rng.integers(30, 61, (n, 2))
    return [{"box": [int(v) for v in (*c, *(c + s))]} for c, s in zip(corners, sides)]


def seed_mask(shape: tuple[int, int]) -> np.ndarray:
    """The propagation seed: a disc in the middle of the slice."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - shape[0] // 2) ** 2 + (xx - shape[1] // 2) ** 2 < SEED_RADIUS**2


def summary(times: list[float], areas: list[float]) -> dict[str, float]:
    return {
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "median_area": float(np.median(areas)),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def paths(spec: dict[str, Any]) -> dict[str, Path]:
    w, m = Path(spec["workdir"]), spec["model"]
    return {
        "checkpoint": w / f"{m}_random_official.pth",
        "image": w / f"image_{spec['size']}.tif",
        "volume": w / f"volume_{spec['slices']}x{spec['slice_size']}.tif",
        "tilesam2d": w / f"tilesam_{m}_2d.zarr",
        "tilesam3d": w / f"tilesam_{m}_3d.zarr",
        "micro_sam2d": w / f"micro_sam_{m}_2d.zarr",
        "micro_sam3d": w / f"micro_sam_{m}_3d.zarr",
    }


# -- the micro-sam side (micro-sam's Python; never imports tilesam) --------------------------
def microsam_phase(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    import torch

    torch.set_num_threads(spec["threads"])
    p, step, name = paths(spec), spec["step"], spec["model"]
    if step == "checkpoint":  # the official code's random model, official format
        torch.manual_seed(0)
        if name == "vit_t":
            from mobile_sam import sam_model_registry
        else:
            from segment_anything import sam_model_registry
        torch.save(sam_model_registry[name]().state_dict(), p["checkpoint"])
        return {"checkpoint": str(p["checkpoint"])}

    import micro_sam
    from micro_sam.multi_dimensional_segmentation import segment_mask_in_volume
    from micro_sam.prompt_based_segmentation import segment_from_box, segment_from_points
    from micro_sam.util import get_sam_model, load_image_data, precompute_image_embeddings

    out: dict[str, Any] = {"import_s": time.perf_counter() - start}
    out["version"], out["torch"] = micro_sam.__version__, torch.__version__
    stride, halo = spec["tile"] - 2 * spec["halo"], spec["halo"]
    tiling = {"tile_shape": (stride, stride), "halo": (halo, halo)}

    def model() -> Any:
        t = time.perf_counter()
        predictor = get_sam_model(model_type=name, checkpoint_path=p["checkpoint"], device="cpu")
        return predictor, time.perf_counter() - t

    if step in ("embed2d", "embed3d"):
        predictor, out["load_s"] = model()
        key, image = (
            ("micro_sam2d", p["image"]) if step == "embed2d" else ("micro_sam3d", p["volume"])
        )
        shutil.rmtree(p[key], ignore_errors=True)
        t = time.perf_counter()
        pixels = load_image_data(str(image))
        options = tiling if step == "embed2d" else {"ndim": 3}
        emb = precompute_image_embeddings(
            predictor, pixels, save_path=str(p[key]), verbose=False, **options
        )
        out["embed_s"] = time.perf_counter() - t
        features = emb["features"]
        out["tiles"] = len(list(features.keys())) if step == "embed2d" else len(pixels)
    elif step == "clicks":
        t = time.perf_counter()
        predictor, _ = model()
        image = load_image_data(str(p["image"]))
        emb = precompute_image_embeddings(
            predictor, image, save_path=str(p["micro_sam2d"]), verbose=False, **tiling
        )
        out["reopen_s"] = time.perf_counter() - t

        def click(prompt: dict[str, Any]) -> np.ndarray:
            if "box" in prompt:
                return segment_from_box(predictor, np.array(prompt["box"]), image_embeddings=emb)
            points = np.array(prompt["points"])
            labels = np.ones(len(points), int)
            return segment_from_points(predictor, points, labels, image_embeddings=emb)

        out["clicks"] = time_prompts(click, spec, out)
    elif step == "propagate":
        t = time.perf_counter()
        predictor, _ = model()
        volume = load_image_data(str(p["volume"]))
        emb = precompute_image_embeddings(
            predictor, volume, save_path=str(p["micro_sam3d"]), ndim=3, verbose=False
        )
        out["reopen_s"] = time.perf_counter() - t
        z = volume.shape[0] // 2
        for pairing, (_, projection) in PAIRINGS.items():

            def walk(projection: str = projection) -> tuple[np.ndarray, tuple[int, int]]:
                seg = np.zeros(volume.shape, np.uint8)
                seg[z] = seed_mask(volume.shape[1:])
                return segment_mask_in_volume(
                    seg, predictor, emb, np.array([z]), stop_lower=False, stop_upper=False,
                    iou_threshold=0.0, projection=projection,
                )  # fmt: skip

            (seg, (z0, z1)), seconds = warm_then_timed(walk)
            out[f"propagate {pairing}"] = walk_result(projection, int(z1 - z0), seconds, seg)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def warm_then_timed(walk: Any, settle: Any = None) -> tuple[Any, float]:
    """A warm-up walk, then (after `settle`, if given) the timed one: its result and seconds."""
    walk()
    if settle is not None:
        settle()
    t = time.perf_counter()
    result = walk()
    return result, time.perf_counter() - t


def walk_result(method: str, slices: int, seconds: float, labels: np.ndarray) -> dict[str, Any]:
    areas = np.count_nonzero(labels.reshape(len(labels), -1), axis=1)
    return {
        "method": method,
        "slices": slices,
        "ms_per_slice": 1e3 * seconds / max(slices, 1),
        "median_area": float(np.median(areas)),
    }


def time_prompts(click: Any, spec: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """First prompt (cold), then each kind's prompts: a warm-up pass, a timed pass."""
    results = {}
    first = prompts("large", spec)[0]
    t = time.perf_counter()
    click(first)
    out["first_click_ms"] = 1e3 * (time.perf_counter() - t)
    for kind in KINDS:
        chosen = prompts(kind, spec)
        for prompt in chosen:  # warm-up: embeddings read, graphs traced, caches filled
            click(prompt)
        times, areas = [], []
        for prompt in chosen:
            t = time.perf_counter()
            mask = click(prompt)
            times.append(1e3 * (time.perf_counter() - t))
            areas.append(float(np.count_nonzero(mask)))
        results[kind] = summary(times, areas)
    return results


# -- the TileSAM side (this environment; never imports micro_sam) ----------------------------
def tilesam_phase(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    import torch

    torch.set_num_threads(spec["threads"])
    import tilesam
    from tilesam.segment.session import Session
    from tilesam.volumes.stop_rules import StopRules

    out: dict[str, Any] = {"import_s": time.perf_counter() - start}
    out["version"], out["torch"] = tilesam.__version__, torch.__version__
    p, step, name = paths(spec), spec["step"], spec["model"]
    grid = {"tile_size": spec["tile"], "halo": spec["halo"]}

    if step in ("embed2d", "embed3d"):
        key, image = ("tilesam2d", p["image"]) if step == "embed2d" else ("tilesam3d", p["volume"])
        options = {**(grid if step == "embed2d" else VOLUME), "cache_encoding": spec["encoding"]}
        t = time.perf_counter()
        model = tilesam.load_model(name, checkpoint=p["checkpoint"], device="cpu")
        out["load_s"] = time.perf_counter() - t
        out["encoder_dtype"] = str(model.encoder_dtype).removeprefix("torch.")
        out["embed_s"], out["tiles"] = timed_embed(image, model, p[key], options)
        if model.encoder_dtype != torch.float32:  # the same work in float32 beside it
            exact = tilesam.load_model(name, checkpoint=p["checkpoint"], precision="float32")
            folder = p[key].with_name(p[key].name + "-float32")
            out["embed_float32_s"], _ = timed_embed(image, exact, folder, options)
            shutil.rmtree(folder)
    elif step == "select":  # clicks on large objects: masks of >= LARGE of a tile
        session = Session(p["image"], name, p["tilesam2d"], checkpoint=p["checkpoint"])
        tried = []
        for point in candidate_points(spec["size"]):
            area = session.segment(points=[point], max_tiles=1).area
            tried.append((area, point))
            if sum(a >= LARGE * spec["tile"] ** 2 for a, _ in tried) == spec["clicks"]:
                break
        chosen = sorted(tried, key=lambda t: -t[0])[: spec["clicks"]]  # the largest, if short
        out["large_points"] = [point for area, point in tried if (area, point) in chosen]
        out["tried"], out["areas"] = len(tried), [area for area, _ in chosen]
    elif step == "clicks":
        t = time.perf_counter()
        session = Session(p["image"], name, p["tilesam2d"], checkpoint=p["checkpoint"])
        out["reopen_s"] = time.perf_counter() - t
        out["predictor"] = type(session.predictor).__name__

        def click(prompt: dict[str, Any]) -> np.ndarray:
            return session.segment(max_tiles=1, **prompt).window

        out["clicks"] = time_prompts(click, spec, out)
        session = Session(p["image"], session.model, p["tilesam2d"])  # torch decodes
        out["clicks torch"] = time_prompts(click, spec, {})
    elif step == "propagate":
        t = time.perf_counter()
        session = Session(p["volume"], name, p["tilesam3d"], checkpoint=p["checkpoint"], **VOLUME)
        out["reopen_s"] = time.perf_counter() - t
        shape = session.source.spatial_shape
        z = shape[0] // 2
        seeds = np.zeros(shape, np.uint32)
        seeds[z] = seed_mask(shape[1:])
        off = StopRules(
            min_area=0, min_overlap=0.0, max_growth=math.inf, min_score_ratio=None,
            min_contrast=None,
        )  # fmt: skip
        calls: list[int] = []
        # The reopened session decodes in NumPy; one given the loaded model, in torch.
        torch_session = Session(p["volume"], session.model, p["tilesam3d"], **VOLUME)
        for decoder, walker in (("", session), (" torch", torch_session)):
            for pairing, (method, _) in PAIRINGS.items():

                def walk(method: str = method, walker: Session = walker) -> np.ndarray:
                    calls.clear()
                    return tilesam.propagate_mask(
                        walker.source, session=walker, mask=seeds, method=method, rules=off,
                        callback=lambda *_: calls.append(1),
                    )  # fmt: skip

                # The warm-up walk traces the decoder's graph of its prompt kind (torch;
                # tilesam.models.decoder_graphs): the timed walk runs on it, as long walks do.
                settle = None if decoder == "" else walker.model._feature_decoder.wait
                labels, seconds = warm_then_timed(walk, settle)
                result = walk_result(method, len(calls), seconds, labels)
                out[f"propagate {pairing}{decoder}"] = result
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def timed_embed(
    image: Path, model: Any, folder: Path, options: dict[str, Any]
) -> tuple[float, int]:
    """Seconds to embed `image` with `model` into a fresh cache `folder`, and its tiles."""
    from tilesam.segment.session import Session

    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    session = Session(image, model, folder, **options)
    session.embed(progress=False)
    return time.perf_counter() - t, session.n_tiles


# -- driver ------------------------------------------------------------------------------------
def microsam_python(given: str | None, models: list[str]) -> tuple[str | None, str]:
    """The micro-sam Python, or None and why not."""
    if not given:
        return None, (
            "micro-sam is not installed here: pass --microsam-python PATH or set "
            "TILESAM_MICROSAM_PYTHON to a Python with micro_sam (and mobile_sam for vit_t)"
        )
    modules = "micro_sam, segment_anything" + (", mobile_sam" if "vit_t" in models else "")
    check = f"import {modules}; print(micro_sam.__version__)"
    try:
        done = subprocess.run(
            [given, "-c", check], capture_output=True, text=True, timeout=300, check=False
        )
    except OSError as error:
        return None, f"cannot run {given}: {error}"
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        return None, f"{given} cannot import {modules}: {tail[0]}"
    return given, f"micro-sam {done.stdout.strip()} ({given})"


def prepare_inputs(spec: dict[str, Any]) -> None:
    """The 2D image and the volume of `spec` (kept for reruns)."""
    import tifffile

    p, rng = paths(spec), np.random.default_rng(0)
    if not p["image"].exists():
        n = spec["size"]
        yy, xx = np.mgrid[:n, :n].astype(np.float32)
        blobs = np.sin(yy / 37.0) * np.cos(xx / 53.0) > 0.6
        pixels = (1000 + 1500 * blobs + rng.normal(0, 60, blobs.shape)).clip(0, 65535)
        tifffile.imwrite(p["image"], pixels.astype(np.uint16), tile=(512, 512), compression="zlib")
    if not p["volume"].exists():
        n, z = spec["slice_size"], spec["slices"]
        zz, yy, xx = np.mgrid[:z, :n, :n].astype(np.float32)
        blobs = np.sin(yy / 29.0 + zz / 7.0) * np.cos(xx / 41.0) > 0.5
        pixels = (1000 + 1500 * blobs + rng.normal(0, 60, blobs.shape)).clip(0, 65535)
        tifffile.imwrite(p["volume"], pixels.astype(np.uint16), compression="zlib")


def run_phase(python: str, tool: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One tool's step in a fresh interpreter, with the thread count set for it."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(spec["threads"])
    env.pop("PYTHONPATH", None)  # each side sees its own environment only
    if tool == "micro_sam":  # timm's deprecations and mobile_sam's re-registrations
        env["PYTHONWARNINGS"] = "ignore::FutureWarning,ignore::UserWarning"
    cmd = [python, os.path.abspath(__file__), "--phase", json.dumps({**spec, "tool": tool})]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{tool} {spec['step']} failed (exit {done.returncode}): see above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def select_large(python: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The clicks on large objects, chosen once per model, image and tile (kept in the workdir)."""
    saved = (
        Path(spec["workdir"]) / f"large_points_{spec['model']}_{spec['size']}_{spec['tile']}.json"
    )
    if saved.exists() and len(json.loads(saved.read_text())["large_points"]) == spec["clicks"]:
        return json.loads(saved.read_text())
    print(f"{spec['model']}: choosing clicks on large objects", flush=True)
    chosen = run_phase(python, "tilesam", {**spec, "step": "select"})
    chosen = {k: chosen[k] for k in ("large_points", "tried", "areas")}
    saved.write_text(json.dumps(chosen) + "\n")
    return chosen


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def bench_model(name: str, args: argparse.Namespace, pythons: dict[str, str]) -> dict[str, Any]:
    """Every step of both tools for model `name`, `args.rounds` times; medians."""
    spec = {
        "workdir": args.workdir,
        "model": name,
        "size": args.size if name == "vit_t" else args.vit_b_size,
        "slices": args.slices if name == "vit_t" else args.vit_b_slices,
        "slice_size": args.slice_size,
        "tile": args.tile,
        "halo": args.halo,
        "clicks": args.clicks,
        "threads": args.threads,
        "encoding": args.cache_encoding,
    }
    prepare_inputs(spec)
    p = paths(spec)
    if not p["checkpoint"].exists():
        run_phase(pythons["micro_sam"], "micro_sam", {**spec, "step": "checkpoint"})
    rounds: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    n_rounds = args.rounds if name == "vit_t" else args.vit_b_rounds
    for r in range(n_rounds):
        got: dict[str, dict[str, Any]] = {tool: {} for tool in TOOLS}
        order = TOOLS if r % 2 == 0 else TOOLS[::-1]  # alternate who goes first
        for step in STEPS:
            for tool in order:
                print(f"round {r + 1}/{n_rounds}: {name} {step}, {tool}", flush=True)
                result = run_phase(pythons[tool], tool, {**spec, "step": step})
                got[tool][step] = result
                if step == "embed2d" and tool == "tilesam" and "large_points" not in spec:
                    spec = {**spec, **select_large(pythons["tilesam"], spec)}
                if step.startswith("embed"):
                    folder = p[f"{tool}{step[-2:]}"]
                    got[tool][step]["cache_mb"] = folder_mb(folder)
                    decoder = folder / "decoder"  # TileSAM's copy of the decoder's weights
                    got[tool][step]["decoder_mb"] = folder_mb(decoder) if decoder.is_dir() else 0.0
        for tool in TOOLS:
            rounds[tool].append(got[tool])
    medians_ = {tool: medians(rounds[tool]) for tool in TOOLS}
    return {"spec": spec, "n_rounds": n_rounds, "rounds": rounds, "medians": medians_}


def medians(rounds: list[Any]) -> Any:
    """The median over rounds of every number (nested dicts kept; other values: the first)."""
    first = rounds[0]
    if isinstance(first, dict):
        return {k: medians([r[k] for r in rounds]) for k in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return float(np.median(rounds))
    return first


def rows_of(m: dict[str, Any]) -> list[tuple[str, float, float, float | None, str]]:
    """(measure, TileSAM, micro-sam, target ratio, unit) of one model's medians."""
    ts, ms, spec = m["medians"]["tilesam"], m["medians"]["micro_sam"], m["spec"]
    tiles = f"{spec['size']}², {ts['embed2d']['tiles']} / {ms['embed2d']['tiles']} tiles"
    vol = f"{spec['slices']} x {spec['slice_size']}²"
    dtype = ts["embed2d"].get("encoder_dtype", "float32")
    rows = [
        (
            f"tiled embed {tiles} (TileSAM {dtype})",
            ts["embed2d"]["embed_s"],
            ms["embed2d"]["embed_s"],
            0.5,
            "s",
        ),  # fmt: skip
        *embed_float32_row(f"tiled embed {tiles}", ts["embed2d"], ms["embed2d"]),
        ("model load", ts["embed2d"]["load_s"], ms["embed2d"]["load_s"], None, "s"),
        (
            "reopen (cache, image, model)",
            ts["clicks"]["reopen_s"],
            ms["clicks"]["reopen_s"],
            None,
            "s",
        ),  # fmt: skip
        (
            "first click after reopen",
            ts["clicks"]["first_click_ms"],
            ms["clicks"]["first_click_ms"],
            None,
            "ms",
        ),  # fmt: skip
    ]
    for kind in KINDS:
        mc = ms["clicks"]["clicks"][kind]["median_ms"]
        rows.append((f"click, {kind} objects", ts["clicks"]["clicks"][kind]["median_ms"], mc,
                     0.5, "ms"))  # fmt: skip
        rows.append((f"click, {kind} objects (TileSAM torch)",
                     ts["clicks"]["clicks torch"][kind]["median_ms"], mc, None, "ms"))  # fmt: skip
    rows += [
        ("cache 2D", ts["embed2d"]["cache_mb"], ms["embed2d"]["cache_mb"], None, "MB"),
        # The target is per tile: the decoder's weights are kept once per cache.
        (
            "cache 2D without TileSAM's decoder weights (the tiles')",
            ts["embed2d"]["cache_mb"] - ts["embed2d"]["decoder_mb"],
            ms["embed2d"]["cache_mb"],
            0.5,
            "MB",
        ),  # fmt: skip
        (
            f"volume embed {vol} (TileSAM {dtype})",
            ts["embed3d"]["embed_s"],
            ms["embed3d"]["embed_s"],
            None,
            "s",
        ),  # fmt: skip
        *embed_float32_row(f"volume embed {vol}", ts["embed3d"], ms["embed3d"]),
        ("volume cache", ts["embed3d"]["cache_mb"], ms["embed3d"]["cache_mb"], None, "MB"),
        ("volume reopen", ts["propagate"]["reopen_s"], ms["propagate"]["reopen_s"], None, "s"),
    ]
    for pairing in PAIRINGS:
        a, b = ts["propagate"][f"propagate {pairing}"], ms["propagate"][f"propagate {pairing}"]
        label = f"propagation, {a['method']} / {b['method']}, per slice"
        target = 0.2 if pairing == "box" else None
        rows.append((label, a["ms_per_slice"], b["ms_per_slice"], target, "ms"))
        torch_ms = ts["propagate"][f"propagate {pairing} torch"]["ms_per_slice"]
        rows.append((f"{label} (TileSAM torch)", torch_ms, b["ms_per_slice"], target, "ms"))
    return rows


def embed_float32_row(label: str, ts: dict[str, Any], ms: dict[str, Any]) -> list[tuple]:
    """The row of TileSAM's embedding in float32, where its default was bfloat16."""
    if "embed_float32_s" not in ts:
        return []
    return [(f"{label} (TileSAM float32)", ts["embed_float32_s"], ms["embed_s"], None, "s")]


def print_table(results: dict[str, Any]) -> None:
    load = [
        f"{v:.1f}" for v in (results["load_average"] or ())[:1] + (results["load_end"] or ())[:1]
    ]
    print(
        f"\n{results['machine']}, load {' -> '.join(load) or '?'}, {results['threads']} "
        f"thread(s), {results['clicks']} prompts per kind; "
        f"{results['micro_sam']}; TileSAM {results['tilesam_version']}"
    )
    for name, m in results["models"].items():
        torches = [m["medians"][tool]["clicks"]["torch"] for tool in TOOLS]
        print(
            f"\n{name}, random official-format checkpoint, median of {m['n_rounds']} round(s); "
            f"torch {torches[0]} (TileSAM), {torches[1]} (micro-sam)"
        )
        rows = [["measure", "TileSAM", "micro-sam", "TileSAM / micro-sam", "target"]]
        for label, a, b, target, unit in m["table"]:
            ratio = a / b if b else float("nan")
            met = (
                "-"
                if target is None
                else f"<= {target}: " + ("met" if ratio <= target else "not met")
            )
            rows.append([label, f"{a:.3g} {unit}", f"{b:.3g} {unit}", f"{ratio:.2f}x", met])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.phase:
        spec = json.loads(args.phase)
        phase = tilesam_phase if spec["tool"] == "tilesam" else microsam_phase
        print(json.dumps(phase(spec)))
        return {}
    python, note = microsam_python(args.microsam_python, args.models)
    if python is None:
        print(f"bench_vs_microsam skipped: {note}.")
        return {"skipped": note}
    args.workdir = str(
        Path(args.workdir or Path(tempfile.gettempdir()) / "tilesam-bench-vs-microsam").resolve()
    )
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    import tilesam

    pythons = {"tilesam": sys.executable, "micro_sam": python}
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "micro_sam": note,
        "tilesam_version": tilesam.__version__,
        "threads": args.threads,
        "clicks": args.clicks,
        "models": {},
    }
    for name in args.models:
        m = bench_model(name, args, pythons)
        m["table"] = rows_of(m)
        results["models"][name] = m
    results["load_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"results: {args.json}")
    return results


if __name__ == "__main__":
    main()
