"""Segment-everything across tile borders and over a whole slide: duplicates, split objects,
speed and memory.

* ``mosaic``: a 4096 x 4096 synthetic nuclei field under the default tiling (1024-pixel
  tiles, halo 64: 5 x 5 tiles). Nuclei are placed on purpose on every corner where four
  tiles' owned regions meet and all along every border between them, centred on the
  border or off it by up to 70 % of their radius, the rest of the field filled with
  nuclei that touch no border (:func:`place_nuclei`). The bundled ``tiny``, grid mode
  (``--mode`` for another), from a zarr cache embedded first (timed apart): F1 at IoU
  0.5, mSA, SA50, and the faults of stitching, counted in true objects
  (:func:`tilesam.evaluate.instances.duplicates_and_splits`): *duplicates* (two found
  objects lie mostly inside one true object) and *split* objects (two found objects each
  cover over 10 % of one), over all objects and over those on borders and corners;
  seconds and tiles/s from the cached embeddings.
* ``slide``: the same kind of field over 20 000 x 20 000 pixels, written as a tiled TIFF
  and embedded once into a cache (both kept in ``--work`` and reused). In a fresh process,
  with the model loaded and the session open on the complete cache, segment-everything and
  then the labels written block by block: the peak resident memory beyond that starting
  point (RSS sampled every 10 ms), seconds and tiles/s.

Prints a table; ``--json`` writes every figure.

Examples
--------
    python benchmarks/bench_auto_mosaic.py --part mosaic --threads 1
    python benchmarks/bench_auto_mosaic.py --part slide --threads 1 --json slide.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from tilesam.cache.tiling import DEFAULT_HALO, TileGrid

TILE = 1024  # tiny's model input: the default tile
RADII = (18, 42)  # nuclei semi-axes, pixels: 36 to 84 pixels across, like Coelho's at 1x
GAP = 4  # least pixels between two nuclei
PITCH = 110  # spacing of the candidate centres that fill the field
#: A nucleus: centre y, x, semi-axes ry, rx, orientation (radians), brightness, on a border.
Nucleus = tuple[float, float, float, float, float, float, bool]


# -- the synthetic field ----------------------------------------------------------------------
def cuts(size: int) -> list[int]:
    """Where the owned regions of the default tiling meet along one axis."""
    grid = TileGrid((size, size), TILE, DEFAULT_HALO)
    return [grid.inner_region(t, 0)[0].start for t in range(1, grid.grid_shape[0])]


def place_nuclei(size: int, seed: int = 0) -> list[Nucleus]:
    """Nuclei on every tile corner and along every tile border (first), then nuclei filling
    the rest of a ``size x size`` field; no two closer than :data:`GAP`."""
    rng = np.random.default_rng(seed)
    lines = cuts(size)
    placed: dict[tuple[int, int], list[Nucleus]] = {}
    for k, (cy, cx, along_x) in enumerate(_border_centres(lines, size)):
        cy, cx, ry, rx, *rest = _nucleus(rng, cy, cx, border=True)
        shift = rng.uniform(-0.7, 0.7) * min(ry, rx) if k % 2 else 0.0  # on the line, or off
        cy, cx = (cy + shift, cx) if along_x else (cy, cx + shift)
        _add(placed, (cy, cx, ry, rx, *rest), size)
    clear = RADII[1] + GAP  # the filling nuclei touch no border: those are placed above
    for cy in range(PITCH // 2, size, PITCH):
        for cx in range(PITCH // 2, size, PITCH):
            y, x = cy + rng.uniform(-25, 25), cx + rng.uniform(-25, 25)
            if min(abs(y - c) for c in lines) > clear and min(abs(x - c) for c in lines) > clear:
                _add(placed, _nucleus(rng, y, x, border=False), size)
    return [n for bucket in placed.values() for n in bucket]


def _border_centres(lines: list[int], size: int) -> list[tuple[float, float, bool]]:
    """``(y, x, along_x)``: every corner, then points every 150 pixels along every border
    (clear of the corners), `along_x` where the border runs along x (a horizontal line)."""
    centres = [(float(a), float(b), False) for a in lines for b in lines]
    for c in lines:
        for along in np.arange(75, size - 75, 150, dtype=float):
            if min(abs(along - d) for d in lines) > 2 * RADII[1] + GAP:
                centres += [(float(c), along, True), (along, float(c), False)]
    return centres


def _nucleus(rng: np.random.Generator, cy: float, cx: float, border: bool) -> Nucleus:
    ry, rx = rng.uniform(*RADII, 2)
    return (cy, cx, ry, rx, rng.uniform(0, np.pi), rng.uniform(90, 220), border)


def _add(placed: dict[tuple[int, int], list[Nucleus]], nucleus: Nucleus, size: int) -> None:
    """Keep `nucleus` if it lies inside the field and clear of every kept one (a spatial
    hash of cells wider than two nuclei: only the 3 x 3 cells around it can collide)."""
    cy, cx, ry, rx = nucleus[:4]
    r = max(ry, rx)
    if not (r <= cy < size - r and r <= cx < size - r):
        return
    cell = (int(cy // 128), int(cx // 128))
    near = (
        n
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        for n in placed.get((cell[0] + dy, cell[1] + dx), [])
    )
    if all(np.hypot(cy - n[0], cx - n[1]) > r + max(n[2], n[3]) + GAP for n in near):
        placed.setdefault(cell, []).append(nucleus)


def render(
    nuclei: list[Nucleus], rows: slice, width: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Image (uint8) and labels (uint32, ids = index + 1) of the field's `rows`: textured
    nuclei on a dark background, blurred like a microscope, with camera noise."""
    margin = 8  # rendered beyond the rows, so that the blur is the same at strip seams
    y0, y1 = max(rows.start - margin, 0), rows.stop + margin
    labels = np.zeros((y1 - y0, width), np.uint32)
    bright = np.zeros(labels.shape, np.float32)
    for k, (cy, cx, ry, rx, angle, level, _) in enumerate(nuclei, start=1):
        r = int(np.ceil(max(ry, rx)))
        if cy + r < y0 or cy - r >= y1:
            continue
        ys = slice(max(int(cy) - r, y0), min(int(cy) + r + 2, y1))
        xs = slice(max(int(cx) - r, 0), min(int(cx) + r + 2, width))
        yy, xx = np.mgrid[ys, xs]
        c, s = np.cos(angle), np.sin(angle)
        u, v = (yy - cy) * c + (xx - cx) * s, -(yy - cy) * s + (xx - cx) * c
        inside = (u / ry) ** 2 + (v / rx) ** 2 <= 1
        window = (slice(ys.start - y0, ys.stop - y0), xs)
        labels[window][inside] = k
        bright[window][inside] = level
    rng = np.random.default_rng([seed, rows.start])
    texture = ndimage.gaussian_filter(rng.normal(0, 1, labels.shape).astype(np.float32), 3)
    image = ndimage.gaussian_filter(22 + bright * (1 + 2.5 * texture), 1.5)
    image += rng.normal(0, 5, labels.shape)
    keep = slice(rows.start - y0, rows.stop - y0)
    return np.clip(image[keep], 0, 255).astype(np.uint8), labels[keep]


def write_field(path: Path, nuclei: list[Nucleus], size: int) -> np.ndarray | None:
    """Render the field strip by strip into a tiled TIFF at `path`; returns the labels
    where they are small enough to score (up to 8192 pixels a side)."""
    import tifffile

    image = np.zeros((size, size), np.uint8)
    labels = np.zeros((size, size), np.uint32) if size <= 8192 else None
    for start in range(0, size, 1024):
        rows = slice(start, min(start + 1024, size))
        image[rows], strip = render(nuclei, rows, size)
        if labels is not None:
            labels[rows] = strip
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image, tile=(512, 512))
    return labels


# -- the measurements -------------------------------------------------------------------------
def embedded_session(image: Path, cache: Path):
    """A session on `image` with the bundled tiny and its zarr cache, missing tiles
    embedded (timed)."""
    from tilesam.segment.session import Session

    session = Session(image, "tiny", cache)
    start = time.perf_counter()
    embedded = session.embed(progress=True)
    return session, {"tiles_embedded": embedded, "embed_seconds": time.perf_counter() - start}


def run_mosaic(work: Path, size: int, mode: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The mosaic: scores, faults over all and over border objects, speed."""
    from tilesam.automatic import segment_everything
    from tilesam.evaluate.instances import duplicates_and_splits, score_instances

    nuclei = place_nuclei(size)
    image = work / f"mosaic_{size}.tif"
    truth = write_field(image, nuclei, size)
    session, embed = embedded_session(image, work / f"mosaic_{size}.zarr")
    start = time.perf_counter()
    result = segment_everything(session, mode=mode, **settings)
    seconds = time.perf_counter() - start
    labels = result.labels
    on_border = np.isin(truth, [k for k, n in enumerate(nuclei, start=1) if n[6]])
    border_truth = np.where(on_border, truth, 0)
    # Found objects that touch no border nucleus are left out of the border-only count.
    border_found = np.where(np.isin(labels, np.unique(labels[on_border])), labels, 0)
    scores = score_instances(labels, truth)
    duplicates, splits = duplicates_and_splits(labels, truth)
    border_dup, border_split = duplicates_and_splits(border_found, border_truth)
    return {
        "size": size, "tiles": session.n_tiles, "objects": len(nuclei),
        "border_objects": int(sum(n[6] for n in nuclei)), **scores.as_dict(),
        "duplicates": duplicates, "splits": splits, "border_duplicates": border_dup,
        "border_splits": border_split,
        "border_recall": score_instances(border_found, border_truth).recall,
        "seconds": seconds, "tiles_per_second": session.n_tiles / seconds,
        **embed, "stats": result.stats,
    }  # fmt: skip


def run_slide(work: Path, size: int, mode: str, settings: dict, threads: int | None) -> dict:
    """The slide: the TIFF and cache made once, then the measurement in a fresh process."""
    image, cache = work / f"slide_{size}.tif", work / f"slide_{size}.zarr"
    made: dict[str, Any] = {}
    if not image.is_file():
        start = time.perf_counter()
        write_field(image, place_nuclei(size, seed=1), size)
        made["write_seconds"] = time.perf_counter() - start
    made |= embedded_session(image, cache)[1]
    spec = {"image": str(image), "cache": str(cache), "mode": mode, "settings": settings,
            "threads": threads, "out": str(work / f"slide_{size}_labels.tif")}  # fmt: skip
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return made | json.loads(done.stdout.strip().splitlines()[-1]) | {"size": size}


def slide_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: the model loaded, the session open on the complete cache, then
    segment-everything and writing the labels, each with its peak RSS beyond the start."""
    import torch

    from tilesam.automatic import segment_everything
    from tilesam.segment.session import Session

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    session = Session(spec["image"], "tiny", spec["cache"])
    session.model  # noqa: B018 - loaded now, so that the start point holds it
    with RssPeak() as segmenting:
        start = time.perf_counter()
        result = segment_everything(session, mode=spec["mode"], **spec["settings"])
        seconds = time.perf_counter() - start
    with RssPeak() as writing:
        start = time.perf_counter()
        result.save(spec["out"], like=session.source)
        write_seconds = time.perf_counter() - start
    return {
        "tiles": session.n_tiles, "n_objects": result.n_objects, "seconds": seconds,
        "tiles_per_second": session.n_tiles / seconds, "write_labels_seconds": write_seconds,
        "rss_start_mb": segmenting.start_mb, "peak_beyond_start_mb": segmenting.beyond_mb,
        "write_peak_beyond_start_mb": writing.beyond_mb + segmenting.held_mb,
        "stats": result.stats,
    }  # fmt: skip


class RssPeak:
    """The peak resident memory of this process while the block runs, beyond what it held
    when the block started (sampled every 10 ms by a thread), in MiB."""

    def __enter__(self) -> RssPeak:
        import psutil

        self._process = psutil.Process()
        self.start_mb = self._rss()
        self._peak = self.start_mb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, self._rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        end = self._rss()
        self.beyond_mb = max(self._peak, end) - self.start_mb
        self.held_mb = end - self.start_mb  # what the block left held (e.g. the result)


# -- the driver -------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", nargs="+", default=["mosaic", "slide"], choices=("mosaic", "slide"))
    p.add_argument("--size", type=int, default=4096, help="mosaic side, pixels")
    p.add_argument("--slide-size", type=int, default=20_000, help="slide side, pixels")
    p.add_argument("--work", default="/tmp/work/bench_auto_mosaic", help="images and caches")
    p.add_argument("--mode", default="grid", help="mode of segment-everything (default: grid)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="a threshold of AutoSettings, e.g. points_per_side=16 (repeatable)",
    )  # fmt: skip
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(slide_child(json.loads(args.child)), default=float))
        return {}
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    work = Path(args.work)
    report: dict[str, Any] = {
        "date": date.today().isoformat(), "machine": platform.platform(),
        "processor": platform.processor(), "torch_threads": torch.get_num_threads(),
        "mode": args.mode, "settings": settings, "results": {},
    }  # fmt: skip
    if "mosaic" in args.part:
        report["results"]["mosaic"] = run_mosaic(work, args.size, args.mode, settings)
    if "slide" in args.part:
        slide = run_slide(work, args.slide_size, args.mode, settings, args.threads)
        report["results"]["slide"] = slide
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return report


def _print(report: dict[str, Any]) -> None:
    print(
        f"{report['date']}  {report['machine']}  torch threads {report['torch_threads']}  "
        f"mode {report['mode']}  {report['settings'] or ''}"
    )
    mosaic = report["results"].get("mosaic")
    if mosaic:
        print(
            f"mosaic {mosaic['size']}²: {mosaic['n_true']} nuclei ({mosaic['border_objects']} on "
            f"borders and corners), {mosaic['tiles']} tiles\n"
            f"  F1@0.5 {mosaic['f1']:.3f}  mSA {mosaic['msa']:.3f}  SA50 {mosaic['sa50']:.3f}  "
            f"found {mosaic['n_pred']}\n"
            f"  duplicates {mosaic['duplicates']}  splits {mosaic['splits']}  (border objects: "
            f"{mosaic['border_duplicates']} / {mosaic['border_splits']}, recall "
            f"{mosaic['border_recall']:.3f})\n"
            f"  {mosaic['seconds']:.1f} s from the cache, {mosaic['tiles_per_second']:.2f} tiles/s"
            f" (embedding: {mosaic['tiles_embedded']} tiles, {mosaic['embed_seconds']:.1f} s)"
        )
    slide = report["results"].get("slide")
    if slide:
        print(
            f"slide {slide['size']}²: {slide['tiles']} tiles, {slide['n_objects']} objects\n"
            f"  {slide['seconds']:.1f} s from the cache, {slide['tiles_per_second']:.2f} tiles/s;"
            f" labels written in {slide['write_labels_seconds']:.1f} s\n"
            f"  peak memory beyond the loaded model and open session: "
            f"{slide['peak_beyond_start_mb']:.0f} MiB segmenting, "
            f"{slide['write_peak_beyond_start_mb']:.0f} MiB writing (start "
            f"{slide['rss_start_mb']:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
