"""The PyQGIS snippet of docs/qgis.md (its ```py blocks, which the main suite's docs test
leaves out as they need QGIS) runs, in a folder holding the files it names."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "qgis.md"


def test_the_pyqgis_snippet_runs(qgis_app, utm_scene, scene_geometry, tmp_path, monkeypatch):
    shutil.copy(utm_scene, tmp_path / "scene.tif")
    points = [scene_geometry.map_point(r, c) for r, c, _ in scene_geometry.objects]
    features = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": p}}
        for p in points
    ]
    collection = {"type": "FeatureCollection", "features": features}
    (tmp_path / "points.geojson").write_text(json.dumps(collection))
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```py\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/qgis.md", "exec"), {})
    assert (tmp_path / "objects.gpkg").is_file() and (tmp_path / "scene.zarr").is_dir()
