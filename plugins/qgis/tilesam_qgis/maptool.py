"""`TileSAMMapTool`: clicks and boxes on the map canvas, for a `MapAnnotator`.

Left click: a positive point; right click: a negative point; a left drag: a box (drawn
as a rubber band while dragging). Enter commits the object, Escape clears it. Positions
are the canvas's map coordinates (its CRS); the annotator hands them to the core with
that CRS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qgis.core import QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import QPoint, QRect, Qt
from qgis.PyQt.QtGui import QColor, QKeyEvent

if TYPE_CHECKING:
    from tilesam_qgis._mapannotator import MapAnnotator

#: A press and release further apart than this (screen pixels) is a drag: a box.
DRAG_PIXELS = 4


class TileSAMMapTool(QgsMapTool):
    """Prompts for `annotator` from mouse events on `canvas`.

    Parameters
    ----------
    canvas : QgsMapCanvas
        The canvas the tool is set on (``canvas.setMapTool(tool)``).
    annotator : MapAnnotator
        Receives the points (``add_point``) and boxes (``set_box``) in map coordinates.
    """

    def __init__(self, canvas: QgsMapCanvas, annotator: MapAnnotator) -> None:
        super().__init__(canvas)
        self.annotator = annotator
        self.setCursor(Qt.CrossCursor)
        self._press: QPoint | None = None
        self._start: QgsPointXY | None = None
        self.box_band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.box_band.setStrokeColor(QColor(60, 140, 255))
        self.box_band.setFillColor(QColor(60, 140, 255, 40))
        self.box_band.setWidth(2)

    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802 - Qt's name
        """Remember where a left button went down (a click or the start of a box)."""
        if event.button() == Qt.LeftButton:
            self._press, self._start = event.pos(), event.mapPoint()

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        """Draw the box while a left drag goes on."""
        if self._start is None or not self._dragged(event.pos()):
            return
        self.box_band.setToCanvasRectangle(QRect(self._press, event.pos()).normalized())

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:  # noqa: N802
        """A click adds a point (left positive, right negative); a drag sets the box."""
        start, press = self._start, self._press
        self._start = self._press = None
        self.box_band.reset(QgsWkbTypes.PolygonGeometry)
        if event.button() == Qt.RightButton:
            self.annotator.add_point(event.mapPoint(), 0)
        elif event.button() == Qt.LeftButton:
            if start is not None and self._dragged(event.pos(), press):
                self.annotator.set_box(QgsRectangle(start, event.mapPoint()))
            else:
                self.annotator.add_point(event.mapPoint(), 1)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        """Enter commits the object (what came of it said, never raised from the event),
        Escape clears it."""
        if event.key() in (Qt.Key_Return, Qt.Key_Enter):
            self.annotator.commit_and_say()
            event.accept()
        elif event.key() == Qt.Key_Escape:
            self.annotator.clear()
            event.accept()
        else:
            event.ignore()

    def deactivate(self) -> None:
        """Drop a half-drawn box when another tool takes the canvas."""
        self._start = self._press = None
        self.box_band.reset(QgsWkbTypes.PolygonGeometry)
        super().deactivate()

    def unload(self) -> None:
        """Take the tool off the canvas and remove its rubber band."""
        if self.canvas().mapTool() is self:
            self.canvas().unsetMapTool(self)
        self.box_band.reset(QgsWkbTypes.PolygonGeometry)
        self.canvas().scene().removeItem(self.box_band)

    def _dragged(self, pos: QPoint, press: QPoint | None = None) -> bool:
        press = press or self._press
        return press is not None and (pos - press).manhattanLength() > DRAG_PIXELS
