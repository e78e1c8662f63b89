"""The picture of docs/qgis.md's map tool: a real, headless QGIS canvas and the TileSAM dock.

    QT_QPA_PLATFORM=offscreen .venv-qgis/bin/python docs/scripts/qgis_screenshots.py
    # writes docs/images/qgis_maptool.png

Opens ``sample_data/aerial.tif`` on a `QgsMapCanvas` beside the TileSAM dock, computes the
embeddings with the dock's button (a `QgsTask`, in a temporary cache), then drives the map
tool with the same synthetic mouse events as the tests: four fields of
``sample_data/aerial_points.geojson`` are clicked and committed into a GeoPackage layer
(outlined in cyan), a fifth is clicked and left live (the yellow rubber band, its point in
green). Nothing is written beside the sample.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GDAL_PAM_ENABLED", "NO")  # no .aux.xml written beside the sample
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "qgis"))

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFillSymbol,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent  # noqa: E402
from qgis.PyQt.QtCore import QEvent, QPoint, Qt  # noqa: E402
from qgis.PyQt.QtWidgets import QHBoxLayout, QWidget  # noqa: E402

SAMPLE = ROOT / "sample_data"
OUT = ROOT / "docs" / "images" / "qgis_maptool.png"
#: Which points of aerial_points.geojson are committed, and which one is left live.
COMMITTED, LIVE = (4, 6, 12, 13), 5
#: Map units (m) around those points on the canvas.
ZOOM_MARGIN = 1100.0


def wait(condition, seconds: float = 600.0) -> None:
    """Process Qt events until `condition()` holds."""
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("timed out waiting for QGIS")
        QgsApplication.processEvents()
        time.sleep(0.02)


def lonlat_points() -> list[QgsPointXY]:
    """The sample's prompt points (longitude, latitude)."""
    data = json.loads((SAMPLE / "aerial_points.geojson").read_text())
    return [QgsPointXY(*f["geometry"]["coordinates"]) for f in data["features"]]


def click(dock, point: QgsPointXY) -> None:
    """A left click on the canvas at `point` (map coordinates of the canvas)."""
    pixel = dock.canvas.getCoordinateTransform().transform(point)
    pos = QPoint(round(pixel.x()), round(pixel.y()))
    for kind in (QEvent.MouseButtonPress, QEvent.MouseButtonRelease):
        held = Qt.LeftButton if kind == QEvent.MouseButtonPress else Qt.NoButton
        event = QgsMapMouseEvent(dock.canvas, kind, pos, Qt.LeftButton, held)
        if kind == QEvent.MouseButtonPress:
            dock.tool.canvasPressEvent(event)
        else:
            dock.tool.canvasReleaseEvent(event)


def build_window(layer: QgsRasterLayer, work: Path):
    """A window with the canvas (the raster's CRS) and the TileSAM dock beside it."""
    from tilesam_qgis.dock import TileSAMDock

    canvas = QgsMapCanvas()
    canvas.setDestinationCrs(layer.crs())
    canvas.setLayers([layer])
    canvas.setCanvasColor(Qt.white)
    dock = TileSAMDock(canvas)
    dock.layer_box.setLayer(layer)
    dock.cache_box.setFilePath(str(work / "aerial.zarr"))
    dock.objects_box.setFilePath(str(work / "fields.gpkg"))
    window = QWidget()
    row = QHBoxLayout(window)
    row.addWidget(canvas, 1)
    row.addWidget(dock)
    window.resize(980, 640)
    window.show()
    canvas.setExtent(layer.extent())
    QgsApplication.processEvents()
    return window, dock


def annotate(dock, layer: QgsRasterLayer) -> None:
    """Embed, commit three fields, leave a fourth live."""
    dock.compute_embeddings()
    wait(lambda: dock.task is None)
    dock.activate_tool(True)
    to_canvas = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:4326"), layer.crs(), QgsProject.instance()
    )
    points = [to_canvas.transform(p) for p in lonlat_points()]
    shown = [points[i] for i in (*COMMITTED, LIVE)]
    extent = QgsRectangle(shown[0], shown[1])
    for point in shown[2:]:
        extent.combineExtentWith(point)
    extent.grow(ZOOM_MARGIN)
    dock.canvas.setExtent(extent)
    QgsApplication.processEvents()
    objects = None
    for i in COMMITTED:
        click(dock, points[i])
        objects, _ = dock.commit()
    objects.setRenderer(objects.renderer().clone())
    symbol = QgsFillSymbol.createSimple(
        {"color": "0,220,255,60", "outline_color": "0,220,255", "outline_width": "0.6"}
    )
    objects.renderer().setSymbol(symbol)
    dock.canvas.setLayers([objects, layer])
    click(dock, points[LIVE])


def main() -> None:
    app = QgsApplication([], True)
    app.initQgis()
    with tempfile.TemporaryDirectory() as tmp:
        layer = QgsRasterLayer(str(SAMPLE / "aerial.tif"), "aerial")
        QgsProject.instance().addMapLayer(layer)
        window, dock = build_window(layer, Path(tmp))
        annotate(dock, layer)
        drawn = []
        dock.canvas.mapCanvasRefreshed.connect(lambda: drawn.append(True))
        dock.canvas.refreshAllLayers()
        wait(lambda: drawn and not dock.canvas.isDrawing())
        QgsApplication.processEvents()
        save(window.grab().toImage(), OUT)
        dock.unload()
        window.close()
        QgsProject.instance().removeAllMapLayers()
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


def save(image, path: Path) -> None:
    """`image` (a QImage) as a PNG of at most 256 colours (small enough for the docs)."""
    from PIL import Image
    from qgis.PyQt.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.WriteOnly)
    image.save(buffer, "PNG")
    import io

    picture = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
    picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


if __name__ == "__main__":
    main()
