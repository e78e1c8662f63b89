"""The map tool's test bench, shared by ``test_maptool*.py``: a scene with one bright
square, a real `QgsMapCanvas` (offscreen) with the TileSAM dock on it (`open_dock`),
clicks through the map tool (`click`) and a stand-in for QGIS's `iface` (`fake_iface`).
The ``scene`` fixture (conftest) writes the scene.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMessageBar
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtWidgets import QMainWindow

#: The scene: 512 x 512 pixels of 2 m in UTM 33N, a bright 40-pixel square at (200, 300).
ORIGIN, PIXEL, SQUARE = (400000.0, 5100000.0), 2.0, (200, 300, 240, 340)
UTM, LONLAT = "EPSG:32633", "EPSG:4326"
#: How long a test holds the core's work (an opening, an embedding) at most: a dock that
#: blocked on it would hang this long.
HOLD_S = 10.0


def map_xy(row: float, col: float) -> tuple[float, float]:
    """UTM coordinates of a pixel position."""
    return ORIGIN[0] + col * PIXEL, ORIGIN[1] - row * PIXEL


def square_geometry(crs: str = UTM) -> QgsGeometry:
    """The square's true footprint on the map, in `crs`."""
    y0, x0, y1, x1 = SQUARE
    (xa, ya), (xb, yb) = map_xy(y1, x0), map_xy(y0, x1)
    geometry = QgsGeometry.fromRect(QgsRectangle(xa, ya, xb, yb))
    if crs != UTM:
        geometry.densifyByCount(16)
        geometry.transform(_transform(UTM, crs))
    return geometry


def _transform(src: str, dst: str) -> QgsCoordinateTransform:
    return QgsCoordinateTransform(
        QgsCoordinateReferenceSystem(src), QgsCoordinateReferenceSystem(dst), QgsProject.instance()
    )


def iou(a: QgsGeometry, b: QgsGeometry) -> float:
    return a.intersection(b).area() / a.combine(b).area()


def wait(condition, seconds: float = 120.0) -> None:
    """Process events until `condition()` holds."""
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        QgsApplication.processEvents()
        time.sleep(0.01)


class open_dock:  # noqa: N801 - used like a function
    """A canvas showing `scene` (in `crs`) and a TileSAM dock with the map tool on it;
    `ready`: its session opened (else the first click or *Compute embeddings* opens it)."""

    def __init__(
        self, scene: Path, cache: Path | None, crs: str = UTM, iface=None, ready: bool = False
    ) -> None:
        from tilesam_qgis.dock import TileSAMDock

        self.layer = QgsRasterLayer(str(scene), "scene")
        assert self.layer.isValid()
        QgsProject.instance().addMapLayer(self.layer)
        canvas = self.canvas = QgsMapCanvas()
        canvas.resize(512, 512)
        canvas.show()
        canvas.setDestinationCrs(QgsCoordinateReferenceSystem(crs))
        canvas.setLayers([self.layer])
        extent = _transform(UTM, crs).transformBoundingBox(self.layer.extent())
        canvas.setExtent(extent)
        QgsApplication.processEvents()
        self.dock = TileSAMDock(canvas, iface)
        self.dock.layer_box.setLayer(self.layer)
        self.dock.tile_box.setValue(256)
        if cache is not None:
            self.dock.cache_box.setFilePath(str(cache))
        self.dock.activate_tool(True)
        assert canvas.mapTool() is self.dock.tool
        if ready:
            self.dock.annotator.request_session()
            wait(lambda: self.dock.annotator.opening is None)
            assert self.dock.annotator.session is not None, self.dock.status.text()

    def __enter__(self):
        return self.dock

    def __exit__(self, *exc) -> None:
        from tilesam_qgis import _maptask

        self.dock.unload()
        QgsProject.instance().removeAllMapLayers()
        self.canvas.hide()
        self.canvas.deleteLater()
        QgsApplication.processEvents()
        wait(lambda: not _maptask._USERS)  # no task of this test runs on into the next


def fake_iface(canvas) -> SimpleNamespace:
    """What the dock and the plugin use of QGIS's `iface`: a main window, a message bar."""
    window, bar = QMainWindow(), QgsMessageBar()
    return SimpleNamespace(
        window=window,
        bar=bar,
        mapCanvas=lambda: canvas,
        messageBar=lambda: bar,
        activeLayer=lambda: None,
        addDockWidget=window.addDockWidget,
        removeDockWidget=window.removeDockWidget,
    )


def event(canvas, kind, point, button=Qt.LeftButton, crs: str = UTM) -> QgsMapMouseEvent:
    """A mouse event at the canvas pixel of the UTM map `point` (shown in `crs`)."""
    if crs != UTM:
        point = _transform(UTM, crs).transform(QgsPointXY(*point))
    pixel = canvas.getCoordinateTransform().transform(QgsPointXY(*point))
    held = Qt.NoButton if kind == QEvent.MouseButtonRelease else button
    return QgsMapMouseEvent(canvas, kind, QPoint(round(pixel.x()), round(pixel.y())), button, held)


def click(dock, row, col, button=Qt.LeftButton, crs: str = UTM, answer: bool = True) -> None:
    """Press and release at a pixel position of the scene, through the map tool; with
    `answer`, wait until the session, opened by the first click, has answered it."""
    point = map_xy(row, col)
    dock.tool.canvasPressEvent(event(dock.canvas, QEvent.MouseButtonPress, point, button, crs))
    dock.tool.canvasReleaseEvent(event(dock.canvas, QEvent.MouseButtonRelease, point, button, crs))
    if answer:
        wait(lambda: dock.annotator.opening is None)


CENTRE = ((SQUARE[0] + SQUARE[2]) / 2, (SQUARE[1] + SQUARE[3]) / 2)


def write_scene(path: Path) -> Path:
    """Write the scene at `path`: a UTM GeoTIFF with a bright square on a noisy dark ground."""
    import rasterio
    from rasterio.transform import from_origin

    image = np.random.default_rng(0).integers(30, 60, (3, 512, 512)).astype(np.uint8)
    y0, x0, y1, x1 = SQUARE
    image[:, y0:y1, x0:x1] = 220
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 3, "dtype": "uint8"}
    transform = from_origin(*ORIGIN, PIXEL, PIXEL)
    with rasterio.open(path, "w", crs=UTM, transform=transform, **profile) as out:
        out.write(image)
    return path
