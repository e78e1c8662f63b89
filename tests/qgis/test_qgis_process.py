"""``qgis_process`` (QGIS's own executable, which loads the system GEOS and GDAL) runs
``tilesam:segmentpoints`` from a profile the plugin was linked into by
``tilesam qgis-install``, as docs/qgis.md shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"


@pytest.mark.skipif(not Path(QGIS_PROCESS).is_file(), reason="needs Debian's qgis package")
def test_qgis_process_runs_segmentpoints(utm_scene, scene_geometry, tmp_path):
    from tilesam.cli import main

    config = tmp_path / "qgis-config"
    assert main(["qgis-install", "--config-path", str(config)]) == 0
    settings = config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    settings.parent.mkdir(parents=True)
    settings.write_text("[PythonPlugins]\ntilesam_qgis=true\n")  # enabled, as by the GUI
    r, c, _ = scene_geometry.objects[1]
    x, y = scene_geometry.map_point(r, c)
    points = tmp_path / "points.geojson"
    feature = {"type": "Feature", "properties": {"label": 1},
               "geometry": {"type": "Point", "coordinates": [x, y]}}  # fmt: skip
    points.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    out, vector = tmp_path / "labels.tif", tmp_path / "objects.gpkg"
    # QGIS's Python reads no .pth file from PYTHONPATH: the checkout's src, and this venv's.
    path = [str(ROOT / "src"), sysconfig.get_paths()["purelib"]]
    env = os.environ | {"QGIS_CUSTOM_CONFIG_PATH": str(config), "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        [QGIS_PROCESS, "run", "tilesam:segmentpoints", "--", f"INPUT={utm_scene}",
         f"POINTS={points}", "MODEL=tiny", f"OUTPUT={out}", f"OUTPUT_VECTOR={vector}"],
        env=env | {"QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "OBJECTS:\t1" in done.stdout and out.is_file() and vector.is_file()
