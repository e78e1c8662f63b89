"""Polygons against truth on georeferenced scenes: one prompt point per object from a
GeoJSON in another CRS, objects written as a GeoPackage, read back and compared.

Two scenes:

* ``synthetic``: drawn here, 1024 x 1024, three uint8 bands at 0.5 m in UTM 33N
  (EPSG:32633): roofs of several shapes (rectangles, L-shapes, discs, rotated slabs) and
  colours on a textured ground, with their true footprints; the prompts are each roof's
  innermost pixel written in longitude / latitude (EPSG:4326);
* ``sample``: ``sample_data/aerial.tif`` (a 30 m Landsat-like scene in a custom Albers
  CRS) with ``sample_data/aerial_points.geojson`` (EPSG:4326) and the field outlines of
  ``aerial_labels.tif``.

Per scene: objects found (IoU >= 0.5 with their footprint), the footprint's area error
(median, share within 5 %), and how the polygons overlay the label raster after a round
trip through the GeoPackage and EPSG:4326 and back: the largest gap between a polygon's
bounds and its raster object's pixel bounds, in pixels.

    python benchmarks/bench_geo.py --json bench_geo.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="registry name (default: tiny)")
    parser.add_argument("--json", default="bench_geo.json", help="results file")
    parser.add_argument("--seed", type=int, default=0, help="the synthetic scene's seed")
    return parser.parse_args(argv)


# -- the synthetic scene --------------------------------------------------------------------
def synthetic_scene(folder: Path, seed: int) -> tuple[Path, Path, np.ndarray]:
    """The scene's GeoTIFF, its prompt points (GeoJSON, EPSG:4326) and true footprints."""
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    size = 1024
    ground = rng.normal(0, 1, (size, size))
    yy, xx = np.indices((size, size))
    truth = np.zeros((size, size), np.int32)
    image = np.stack([95 + 8 * ground, 110 + 10 * ground, 70 + 6 * ground])
    for k in range(1, 25):
        shape = _roof(yy, xx, rng, k)
        shape &= truth == 0
        if shape.sum() < 300:
            continue
        truth[shape] = k
        colour = rng.choice([[200, 190, 180], [170, 60, 50], [60, 70, 90], [230, 230, 225]])
        image[:, shape] = np.asarray(colour)[:, None] + rng.normal(0, 5, (3, int(shape.sum())))
    grid = Affine(0.5, 0.0, 400000.0, 0.0, -0.5, 5100000.0)
    path = folder / "roofs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3,
                       dtype="uint8", crs="EPSG:32633", transform=grid, tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as out:  # fmt: skip
        out.write(image.clip(0, 255).astype(np.uint8))
    return path, _points_geojson(folder / "roofs_points.geojson", truth, grid, "EPSG:32633"), truth


def _roof(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """One roof footprint: a rectangle, an L, a disc or a rotated slab."""
    cy, cx = rng.uniform(80, 944, 2)
    h, w = rng.uniform(20, 70, 2)
    kind = k % 4
    if kind == 0:
        return (abs(yy - cy) < h) & (abs(xx - cx) < w)
    if kind == 1:
        box = (abs(yy - cy) < h) & (abs(xx - cx) < w)
        return box & ~((yy - cy > 0) & (xx - cx > 0))
    if kind == 2:
        return (yy - cy) ** 2 + (xx - cx) ** 2 < (0.8 * h) ** 2
    angle = rng.uniform(0, np.pi)
    u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
    return (abs(u) < h) & (abs(v) < 0.4 * w)


def _points_geojson(path: Path, truth: np.ndarray, grid: Any, crs: str) -> Path:
    from rasterio.warp import transform as reproject
    from scipy import ndimage

    features = []
    for k in np.unique(truth[truth > 0]):
        depth = ndimage.distance_transform_edt(np.pad(truth == k, 1))[1:-1, 1:-1]
        row, col = np.unravel_index(depth.argmax(), depth.shape)
        x, y = grid * (col + 0.5, row + 0.5)
        (lon,), (lat,) = reproject(crs, "EPSG:4326", [x], [y])
        features.append({"type": "Feature", "id": int(k), "properties": {"label": 1},
                         "geometry": {"type": "Point", "coordinates": [lon, lat]}})  # fmt: skip
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


# -- one scene -----------------------------------------------------------------------------
def run_scene(image: Path, points: Path, truth: np.ndarray, model: Any, out: Path) -> dict:
    """Segment every feature, write labels and polygons, read them back and score them."""
    from tilesam.automatic.features import segment_features
    from tilesam.io.vectors import read_prompt_features
    from tilesam.segment.session import Session

    session = Session(image, model)
    features = read_prompt_features(points, session.source.georeference, truth.shape)
    start = time.perf_counter()
    result = segment_features(session, features, progress=False)
    seconds = time.perf_counter() - start
    labels = result.labels
    vector = result.save_polygons(out / f"{image.stem}.gpkg", overwrite=True)
    return {
        "objects": len(features),
        "seconds_per_object": seconds / len(features),
        **_score(labels, truth, result.prompt_ids),
        **_overlay(vector, labels, session.source.georeference),
    }


def _score(labels: np.ndarray, truth: np.ndarray, prompt_ids: dict) -> dict[str, Any]:
    ious, errors = [], []
    for object_id, truth_id in prompt_ids.items():
        mask, true = labels == object_id, truth == int(truth_id)
        ious.append((mask & true).sum() / (mask | true).sum())
        errors.append(abs(int(mask.sum()) - int(true.sum())) / true.sum())
    missing = len(np.unique(truth[truth > 0])) - len(prompt_ids)
    ious += [0.0] * missing
    errors = np.array(errors)
    return {
        "found": float(np.mean(np.array(ious) >= 0.5)),
        "mean_iou": float(np.mean(ious)),
        "area_error_median": float(np.median(errors)),
        "area_within_5pct": float(np.mean(errors <= 0.05)),
    }


def _overlay(vector: Path, labels: np.ndarray, geo: Any) -> dict[str, Any]:
    """Polygons read back, sent to EPSG:4326 and back, against their raster objects."""
    import pyogrio.raw
    import shapely
    from rasterio.warp import transform_geom

    meta, _, wkb, fields = pyogrio.raw.read(vector)
    ids = dict(zip(meta["fields"], fields))["id"]
    gaps = []
    for object_id, geometry in zip(ids, shapely.from_wkb(wkb)):
        there = transform_geom(meta["crs"], "EPSG:4326", shapely.geometry.mapping(geometry))
        back = shapely.geometry.shape(transform_geom("EPSG:4326", meta["crs"], there))
        rows, cols = np.nonzero(labels == object_id)
        corners = [geo.pixel_point(x, y) for x, y in shapely.get_coordinates(back.envelope)]
        rr, cc = zip(*corners)
        expected = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        found = (min(rr), min(cc), max(rr), max(cc))
        gaps.append(max(abs(a - b) for a, b in zip(found, expected)))
    return {"polygons": len(gaps), "bounds_gap_px_max": float(max(gaps, default=0.0))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from tilesam.io import open_image
    from tilesam.models.loading import load_model

    model = load_model(args.model)
    out = Path(tempfile.mkdtemp(prefix="tilesam-geo-"))
    image, points, truth = synthetic_scene(out, args.seed)
    results = {"synthetic": run_scene(image, points, truth, model, out)}
    with open_image(SAMPLE / "aerial_labels.tif") as fields:
        truth = fields.read().astype(np.int32)
    results["sample"] = run_scene(
        SAMPLE / "aerial.tif", SAMPLE / "aerial_points.geojson", truth, model, out
    )
    results["machine"] = f"{platform.machine()}, date {time.strftime('%Y-%m-%d %H:%M UTC')}"
    print_table(results)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.json}")
    return results


def print_table(results: dict[str, Any]) -> None:
    print("| scene | objects | found (IoU >= 0.5) | mean IoU | area error, median | "
          "area within 5 % | polygons | bounds gap after round trip | s/object |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("synthetic", "sample"):
        r = results[name]
        print(
            f"| {name} | {r['objects']} | {r['found']:.0%} | {r['mean_iou']:.3f} | "
            f"{r['area_error_median']:.1%} | {r['area_within_5pct']:.0%} | {r['polygons']} | "
            f"{r['bounds_gap_px_max']:.3f} px | {r['seconds_per_object']:.3f} |"
        )


if __name__ == "__main__":
    main()
