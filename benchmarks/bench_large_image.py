"""Large images end to end: write a big tiled TIFF, embed it, reopen the cache, click.

Measures, each phase in a fresh Python process so that memory and start-up are honest:

* ``embed``: :meth:`tilesam.Session.embed` of every tile into a zarr cache (reading,
  normalising, encoding, writing): wall time, tiles/s, peak RSS; and ``encoder``: the
  model's ``embed_batch`` alone on the same tiles, already in memory (tiles/s), so that
  the pipeline's overhead is the ratio of the two;
* ``first mask``: from a cold start of the Python API (process start, ``import tilesam``,
  load the model, open image and cache, one click) to the first mask, with its two parts:
  the interpreter and imports, then the API calls;
* ``click``: the median (and 90th percentile) of 50 later clicks at random places: tile
  lookup, reading the tile's embedding from the cache, the decoder, and stitching across
  tile borders; and the same with ``max_tiles=1`` (one tile, no stitching). A session
  reopened on a complete cache decodes with NumPy (:mod:`tilesam.decode.numpy_decoder`, no torch);
  the same clicks are then timed again in a session given the loaded model (torch), as the
  napari plugin opens them;
* the cache size per tile on disk.

The model is the default one (``--model`` / ``--checkpoint`` to change it); when the
bundled ``tiny`` weights are absent, a randomly initialised ``tiny`` is used and the
output says so: timings hold, masks are meaningless, and a random decoder's masks spread
over many tiles, so the stitched click time is a worst case.

``--formats cog`` runs the same phases on a three-band uint8 Cloud-Optimised GeoTIFF (in a
UTM CRS, with overviews) read by GDAL, as an aerial scene is; ``--formats tiff cog`` runs
both, one after the other, and prints one table per format.

Examples
--------
    python benchmarks/bench_large_image.py --size 4096 --json bench_large_image.json
    python benchmarks/bench_large_image.py            # 20 000 x 20 000 (800 MB of TIFF)
    python benchmarks/bench_large_image.py --formats cog --json bench_large_cog.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TIFF_TILE = 512


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20_000, help="image side in pixels")
    parser.add_argument("--model", default=None, help="registry name (default: tiny)")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file instead")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: fastest)")
    parser.add_argument("--batch", type=int, default=4, help="tiles per encoder batch")
    parser.add_argument("--clicks", type=int, default=50, help="clicks after the first")
    parser.add_argument("--workdir", default=None, help="folder for the TIFF and the cache")
    parser.add_argument("--keep", action="store_true", help="keep the TIFF and the cache")
    parser.add_argument("--json", default="bench_large_image.json", help="results file")
    parser.add_argument(
        "--formats", nargs="+", default=["tiff"], choices=["tiff", "cog"], help="image files"
    )
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # internal
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)  # internal
    return parser.parse_args(argv)


# -- the image ------------------------------------------------------------------------------
def _blocks(size: int):
    """``(y, x, blobs, noise)`` of each TIFF_TILE block: blob-like structures."""
    for y in range(0, size, TIFF_TILE):
        for x in range(0, size, TIFF_TILE):
            yy, xx = np.mgrid[y : y + TIFF_TILE, x : x + TIFF_TILE].astype(np.float32)
            blobs = np.sin(yy / 37.0) * np.cos(xx / 53.0) > 0.6
            yield y, x, blobs, np.random.default_rng(y * size + x).normal(0, 1, blobs.shape)


def write_image(path: Path, size: int) -> None:
    """A uint16 tiled, compressed TIFF of blob-like structures, written tile by tile."""
    import tifffile

    tiles = ((1000 + 1500 * b + 60 * n).clip(0, 65535).astype(np.uint16)
             for _, _, b, n in _blocks(size))  # fmt: skip
    tifffile.imwrite(
        path,
        tiles,
        shape=(size, size),
        dtype=np.uint16,
        tile=(TIFF_TILE, TIFF_TILE),
        compression="zlib",
        bigtiff=True,
    )


def write_cog(path: Path, size: int) -> None:
    """The same structures as three uint8 bands (roofs on fields), a GeoTIFF in UTM 33N
    written block by block, then copied by GDAL into a Cloud-Optimised GeoTIFF."""
    import rasterio
    from affine import Affine
    from rasterio.shutil import copy
    from rasterio.windows import Window

    plain = path.with_suffix(".plain.tif")
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": Affine(0.5, 0, 400000, 0, -0.5, 5100000),
               "tiled": True, "blockxsize": TIFF_TILE, "blockysize": TIFF_TILE,
               "compress": "deflate", "BIGTIFF": "YES"}  # fmt: skip
    colours = np.array([[90, 120, 60], [200, 80, 70]], np.float32)  # field, roof
    with rasterio.open(plain, "w", **profile) as out:
        for y, x, blobs, noise in _blocks(size):
            rgb = colours[blobs.astype(int)] + 12 * noise[..., None]
            h, w = min(TIFF_TILE, size - y), min(TIFF_TILE, size - x)
            block = rgb[:h, :w].clip(0, 255).astype(np.uint8).transpose(2, 0, 1)
            out.write(block, window=Window(x, y, w, h))
    copy(plain, path, driver="COG", COMPRESS="DEFLATE", BIGTIFF="YES", NUM_THREADS="ALL_CPUS")
    plain.unlink()


def model_spec(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """What each phase loads: the asked-for model, else the default, else random `tiny`."""
    from tilesam.errors import TileSAMError
    from tilesam.models.loading import load_model

    if args.model or args.checkpoint:
        return {"model": args.model, "checkpoint": args.checkpoint, "random": False}
    try:
        load_model()
        return {"model": None, "checkpoint": None, "random": False}
    except TileSAMError:
        import torch

        from tilesam.models.registry import ARCHITECTURES, build_sam

        torch.manual_seed(0)
        path = workdir / "tiny_random.pt"
        torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), path)
        return {"model": None, "checkpoint": str(path), "random": True}


# -- phases (each in its own process) --------------------------------------------------------
def _session(spec: dict[str, Any]):
    from tilesam.segment.session import Session

    return Session(
        spec["image"],
        spec["model"],
        spec["cache"],
        checkpoint=spec["checkpoint"],
        device=spec["device"],
    )


def phase_embed(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    session = _session(spec)
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    n = session.embed(progress=True, batch_size=spec["batch"])
    seconds = time.perf_counter() - start
    return {
        "tiles": n,
        "embed_s": seconds,
        "embed_tiles_per_s": n / seconds,
        "peak_rss_mb_before_embed": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "encoder_tiles_per_s": encoder_alone(session, spec["batch"]),
        "grid": list(session.grid_shape),
        "tile_size": session.grid.tile_size,
        "device": str(session.model.device),
        "torch_threads": torch.get_num_threads(),
    }


def encoder_alone(session, batch: int, n: int = 8) -> float:
    """Tiles/s of the encoder on full-size tiles already in memory (no reading or writing)."""
    from tilesam.cache.embed import read_tile

    full = [
        t
        for t in session.store.done_tiles()
        if session.grid.tile_shape(*t[1:]) == (session.grid.tile_size,) * 2
    ][:n]
    pixels = [read_tile(session.source, session.grid, t) for t in full]
    session.model.embed_batch(pixels[:batch], intensity=session.intensity, batch_size=batch)
    start = time.perf_counter()
    session.model.embed_batch(pixels, intensity=session.intensity, batch_size=batch)
    return len(pixels) / (time.perf_counter() - start)


def phase_clicks(spec: dict[str, Any]) -> dict[str, Any]:
    import tilesam.segment.session  # noqa: F401  (timed apart from the API calls below)

    imported_s = time.time() - spec["launched"]
    start = time.perf_counter()
    session = _session(spec)
    height, width = session.source.slice_shape
    first = session.segment(points=[(height // 2, width // 2)])
    api_s = time.perf_counter() - start
    # Wall clock since the driver launched this process: interpreter start-up, imports,
    # model, image, cache and the click.
    first_s = time.time() - spec["launched"]
    rng = np.random.default_rng(0)
    clicks = rng.integers(0, [height, width], size=(spec["clicks"], 2))
    stitched, tiles, single = [], [], []
    for y, x in clicks:
        start = time.perf_counter()
        result = session.segment(points=[(y, x)])
        stitched.append(time.perf_counter() - start)
        tiles.append(len(result.tiles))
        start = time.perf_counter()
        session.segment(points=[(y, x)], max_tiles=1)
        single.append(time.perf_counter() - start)
    # The same clicks decoded by the loaded model (torch), as a session given a SamModel
    # (the napari plugin) decodes them, after a warm-up that traces its decoder graphs.
    with_model = type(session)(spec["image"], session.model, spec["cache"])
    for y, x in clicks[:10]:
        with_model.segment(points=[(y, x)])
    with_model.model._feature_decoder.wait()
    by_model = []
    for y, x in clicks:
        start = time.perf_counter()
        with_model.segment(points=[(y, x)])
        by_model.append(time.perf_counter() - start)
    info = session.store.info()
    return {
        "first_mask_s": first_s,
        "first_mask_imports_s": imported_s,
        "first_mask_api_s": api_s,
        "first_mask_tiles": len(first.tiles),
        "click_median_ms": 1e3 * statistics.median(stitched),
        "click_p90_ms": 1e3 * float(np.percentile(stitched, 90)),
        "click_tiles_mean": float(np.mean(tiles)),
        "click_one_tile_median_ms": 1e3 * statistics.median(single),
        "click_predictor": type(session.predictor).__name__,
        "click_model_median_ms": 1e3 * statistics.median(by_model),
        "click_model_p90_ms": 1e3 * float(np.percentile(by_model, 90)),
        "cache_bytes": info["bytes_on_disk"],
        "cache_mb_per_tile": info["bytes_on_disk"] / info["n_done"] / 2**20,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's VmHWM belongs to this process's own memory; ``ru_maxrss`` there also counts
    the driver's peak before the fork that started this phase (e.g. writing the image).
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def run_phase(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run a phase in a fresh interpreter; its last stdout line is the JSON result."""
    spec = {**spec, "launched": time.time()}
    cmd = [sys.executable, __file__, "--phase", name, "--spec", json.dumps(spec)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- driver ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.phase:
        phase = {"embed": phase_embed, "clicks": phase_clicks}[args.phase]
        print(json.dumps(phase(json.loads(args.spec))))
        return {}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tilesam-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load} (other work on the machine slows every number)"
    )
    results = {fmt: run_format(args, workdir, fmt) for fmt in args.formats}
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.json}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def run_format(args: argparse.Namespace, workdir: Path, fmt: str) -> dict[str, Any]:
    """Every phase on an image file of `fmt`; prints its table."""
    image = workdir / f"image_{args.size}{'_cog' if fmt == 'cog' else ''}.tif"
    cache = workdir / f"cache_{args.size}_{fmt}.zarr"
    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    (write_cog if fmt == "cog" else write_image)(image, args.size)
    write_s = time.perf_counter() - start
    spec = model_spec(args, workdir)
    if spec["random"]:
        print(
            "NOTE: the bundled tiny weights are absent: using RANDOM tiny weights "
            "(timings are valid, masks are not)."
        )
    spec.update(
        image=str(image), cache=str(cache), device=args.device, batch=args.batch, clicks=args.clicks
    )
    results = {
        "size": args.size,
        "format": fmt,
        "write_tiff_s": write_s,
        "tiff_bytes": image.stat().st_size,
        "random_weights": spec["random"],
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        **run_phase("embed", spec),
        **run_phase("clicks", spec),
    }
    print_table(results)
    return results


def print_table(r: dict[str, Any]) -> None:
    rows = [
        (
            "image",
            f"{r['size']} x {r['size']} "
            f"{'3 x uint8, COG' if r['format'] == 'cog' else 'uint16, TIFF'} "
            f"{r['tiff_bytes'] / 2**20:.0f} MiB "
            f"(written in {r['write_tiff_s']:.1f} s)",
        ),
        (
            "tiles",
            f"{r['tiles']} (grid {r['grid']}, {r['tile_size']} px) on {r['device']}, "
            f"{r['torch_threads']} torch thread(s)",
        ),
        ("embed", f"{r['embed_s']:.1f} s, {r['embed_tiles_per_s']:.2f} tiles/s"),
        (
            "encoder alone",
            f"{r['encoder_tiles_per_s']:.2f} tiles/s (pipeline at "
            f"{r['embed_tiles_per_s'] / r['encoder_tiles_per_s']:.0%} of it)",
        ),
        (
            "peak RSS",
            f"{r['peak_rss_mb']:.0f} MiB (before embedding: "
            f"{r['peak_rss_mb_before_embed']:.0f} MiB)",
        ),
        (
            "first mask, cold",
            f"{r['first_mask_s']:.2f} s ({r['first_mask_tiles']} tile(s)): interpreter and "
            f"imports {r['first_mask_imports_s']:.2f} s, then model, image, cache and click "
            f"{r['first_mask_api_s']:.2f} s",
        ),
        (
            "click, median",
            f"{r['click_median_ms']:.0f} ms (p90 {r['click_p90_ms']:.0f} ms, "
            f"{r['click_tiles_mean']:.1f} tile predictions on average)",
        ),
        ("click, one tile", f"{r['click_one_tile_median_ms']:.0f} ms median"),
        ("clicks decoded by", r["click_predictor"]),
        (
            "same, loaded model",
            f"{r['click_model_median_ms']:.0f} ms median (p90 {r['click_model_p90_ms']:.0f} ms): "
            "a session given the loaded model (torch), as in napari",
        ),
        ("cache", f"{r['cache_bytes'] / 2**20:.0f} MiB, {r['cache_mb_per_tile']:.2f} MiB/tile"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
