"""Make the georaster sample of sample_data/ from solaris' test data (Apache-2.0).

    python docs/scripts/make_aerial_sample.py [SHARED_DATA_DIR]

- ``aerial.tif``: solaris' ``sample_geotiff_custom_proj.tif`` as it is (a 3-band 30 m
  Landsat-like scene, 512 x 512, int16, in a custom Albers CRS).
- ``aerial_labels.tif``: its centre-pivot field polygons (``geotiff_custom_proj_labels.geojson``)
  burnt into a GeoTIFF on the same grid, ids 1, 2, ... in the GeoJSON's order. The
  polygons are incomplete: some visible fields have none, so score only prompts on
  labelled fields.
- ``aerial_points.geojson``: one prompt point per labelled field, in longitude / latitude
  (EPSG:4326, another CRS than the scene's): the pixel of each field farthest from its
  edge, its ``label`` 1 and its ``field`` the field's id in ``aerial_labels.tif``.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.warp import transform as reproject
from scipy import ndimage

OUT = Path(__file__).resolve().parents[2] / "sample_data"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def main(data: Path) -> None:
    image = data / "aerial" / "solaris_sample_geotiff_custom_proj.tif"
    polygons = json.loads((image.parent / "solaris_geotiff_custom_proj_labels.geojson").read_text())
    shutil.copyfile(image, OUT / "aerial.tif")
    with rasterio.open(image) as src:
        profile = {"crs": src.crs, "transform": src.transform, "height": src.height,
                   "width": src.width}  # fmt: skip
    shapes = [(f["geometry"], i) for i, f in enumerate(polygons["features"], start=1)]
    labels = rasterize(
        shapes, out_shape=(profile["height"], profile["width"]),
        transform=profile["transform"], dtype=np.uint8,
    )  # fmt: skip
    with rasterio.open(
        OUT / "aerial_labels.tif", "w", driver="GTiff", count=1, dtype="uint8",
        compress="deflate", **profile,
    ) as dst:  # fmt: skip
        dst.write(labels, 1)
    print(f"aerial_labels.tif: {len(shapes)} fields, {np.count_nonzero(labels)} pixels")
    write_points(labels, profile)


def write_points(labels: np.ndarray, profile: dict) -> None:
    """One point per field, inside it (its pixel farthest from the edge), in EPSG:4326."""
    features = []
    for field in range(1, int(labels.max()) + 1):
        depth = ndimage.distance_transform_edt(np.pad(labels == field, 1))[1:-1, 1:-1]
        row, col = np.unravel_index(depth.argmax(), depth.shape)
        x, y = profile["transform"] * (col + 0.5, row + 0.5)
        (lon,), (lat,) = reproject(profile["crs"], "EPSG:4326", [x], [y])
        features.append({"type": "Feature", "id": field,
                         "properties": {"label": 1, "field": field},
                         "geometry": {"type": "Point", "coordinates": [lon, lat]}})  # fmt: skip
    collection = {"type": "FeatureCollection", "features": features}
    (OUT / "aerial_points.geojson").write_text(json.dumps(collection, indent=1) + "\n")
    print(f"aerial_points.geojson: {len(features)} points in EPSG:4326")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED)
