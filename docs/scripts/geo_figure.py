"""The picture of docs/geospatial.md: polygons over the sample scene, on its map grid.

    python docs/scripts/geo_figure.py   # writes docs/images/geo_polygons.png

Segments one object per point of ``sample_data/aerial_points.geojson`` (EPSG:4326) with the
bundled model, writes the polygons as a GeoPackage, reads them back and draws them in the
scene's CRS over the scene (each band scaled as the encoder saw it), beside the field
outlines of ``aerial_labels.tif`` (the truth).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyogrio.raw  # noqa: E402
import shapely  # noqa: E402

from tilesam import Session  # noqa: E402
from tilesam.automatic.features import segment_features  # noqa: E402
from tilesam.io import open_image  # noqa: E402
from tilesam.io.polygons import label_polygons  # noqa: E402
from tilesam.io.vectors import read_prompt_features  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"


def main() -> None:
    session = Session(SAMPLE / "aerial.tif")
    geo, shape = session.source.georeference, session.grid.slice_shape
    features = read_prompt_features(SAMPLE / "aerial_points.geojson", geo, shape)
    result = segment_features(session, features, progress=False)
    vector = result.save_polygons(Path(tempfile.mkdtemp()) / "fields.gpkg")
    _, _, wkb, _ = pyogrio.raw.read(vector)
    found = shapely.from_wkb(wkb)
    with open_image(SAMPLE / "aerial_labels.tif") as fields:
        truth = [p.geometry for p in label_polygons(fields.read(), geo)]
    low, high = (np.asarray(v) for v in session.intensity)
    rgb = ((session.source.read() - low) / (high - low)).clip(0, 1)
    (x0, y1), (x1, y0) = geo.map_point(0, 0), geo.map_point(*shape)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=80)
    ax.imshow(rgb, extent=(x0, x1, y0, y1))
    _outline(ax, truth, "white", "--", "field outline (truth)")
    _outline(ax, found, "#ffcc00", "-", "polygon from one point (tiny)")
    for f in features:
        x, y = geo.map_point(f.points[0][0] + 0.5, f.points[0][1] + 0.5)
        ax.plot(x, y, "o", color="#00e5ff", markersize=4)
    ax.set_xlabel("easting (m, the scene's Albers CRS)")
    ax.set_ylabel("northing (m)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(
        "tilesam segment aerial.tif --points-file aerial_points.geojson --vector", fontsize=9
    )
    fig.tight_layout()
    out = ROOT / "docs" / "images" / "geo_polygons.png"
    fig.savefig(out)
    print(f"{out}: {len(found)} polygons")


def _outline(ax, geometries, colour: str, style: str, label: str) -> None:
    for i, geometry in enumerate(geometries):
        for polygon in getattr(geometry, "geoms", [geometry]):
            x, y = polygon.exterior.xy
            ax.plot(x, y, style, color=colour, linewidth=1.2, label=label if i == 0 else None)
            label = None


if __name__ == "__main__":
    main()
