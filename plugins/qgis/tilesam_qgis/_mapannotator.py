"""`MapAnnotator`: one object at a time on a map canvas, over a `tilesam.Session`.

It holds no segmentation code: clicks and boxes (map coordinates in the canvas CRS) go to
the core as one prompt, the core's mask is traced by the core into a polygon, and that
polygon is drawn as a `QgsRubberBand` (reprojected by QGIS into the canvas CRS) and, on
*Commit*, appended to a GeoPackage layer through its edit buffer.

The session opens on first use in a `QgsTask` (`OpenTask`: loading a large checkpoint or
sampling a huge raster takes seconds to a minute; a cache made for the model reopens
without loading it); clicks made meanwhile are queued and answered, in order, once it is
open.
On embedded tiles a prompt costs only the decoder and is answered at once in the GUI
thread; where a tile is not embedded yet, the core embeds it on demand in a `QgsTask`
(the canvas stays responsive, the newest prompt is answered when it ends). A session is
closed once no such task (nor the dock's embedding) uses it any more
(:func:`tilesam_qgis._maptask.close_session`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qgis.core import QgsApplication, QgsGeometry, QgsPointXY, QgsRectangle, QgsTask, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsRubberBand
from qgis.PyQt.QtGui import QColor

from tilesam.errors import TileSAMError
from tilesam_qgis import _mapcommit, _maptask
from tilesam_qgis._mapsession import MapSettings, PromptState, prompt_crs, result_geometry
from tilesam_qgis._maptask import OpenTask

if TYPE_CHECKING:
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from tilesam.segment.result import SegmentResult
    from tilesam.segment.session import Session

#: Colours of the live mask and of positive / negative points.
MASK_COLOUR, POSITIVE, NEGATIVE = QColor(255, 215, 0), QColor(0, 200, 80), QColor(230, 40, 40)
NO_RASTER = "TileSAM: no raster to segment: add one to the project and choose it in the dock."


class MapAnnotator:
    """Prompts, live mask and commits for one raster layer on `canvas`.

    Parameters
    ----------
    canvas : QgsMapCanvas
        Where the rubber bands are drawn; its CRS is the prompts' CRS.
    notify : callable, optional
        ``notify(text, level)`` for messages (``level`` 0 info, 1 warning, 2 error).
    on_opening : callable, optional
        ``on_opening(text)`` while the session opens (`text` says what opens) and
        ``on_opening(None)`` when the opening ends (open, failed or given up).
    """

    def __init__(
        self,
        canvas: QgsMapCanvas,
        notify: Callable[[str, int], None] | None = None,
        on_opening: Callable[[str | None], None] | None = None,
    ) -> None:
        self.canvas = canvas
        self.notify = notify or (lambda text, level: None)
        self.on_opening = on_opening or (lambda text: None)
        self.layer: QgsRasterLayer | None = None
        self.settings: MapSettings | None = None
        self.objects_path: Path | None = None  # None: beside the raster
        self.session: Session | None = None
        self.opening: OpenTask | None = None  # the session opening in the background
        self.waiting: list[Callable[[Session], None]] = []  # called once it is open
        self.queued: list[tuple[Callable[[Session, Any], None], Any]] = []  # clicks meanwhile
        self.state = PromptState()
        self.result: SegmentResult | None = None
        self.geometry = QgsGeometry()  # the live mask, in the raster's CRS
        self.area = 0.0
        self.pending: QgsTask | None = None  # an on-demand segmentation in flight
        self.version = 0  # of the prompt: bumped by every change
        # A commit asked for while the object was shown in part: the prompt version it is for.
        self.commit_version: int | None = None
        self.shown = 0  # the prompt version of the mask drawn
        self.mask_band = _band(canvas, QgsWkbTypes.PolygonGeometry, MASK_COLOUR)
        self.point_bands = {
            1: _band(canvas, QgsWkbTypes.PointGeometry, POSITIVE),
            0: _band(canvas, QgsWkbTypes.PointGeometry, NEGATIVE),
        }

    # -- session ------------------------------------------------------------------------------
    def configure(self, layer: QgsRasterLayer, settings: MapSettings) -> None:
        """Segment `layer` with `settings` from now on (the session opens on first use)."""
        if settings != self.settings or layer is not self.layer:
            self.clear()
            self.close_session()
        self.layer, self.settings = layer, settings

    def drop_raster(self) -> None:
        """No raster to segment (the last one removed from the project, or one TileSAM
        cannot read chosen): forget the layer, which may be deleted already, and close its
        session; clicks are refused until `configure` gives a raster again."""
        self.clear()
        self.layer = self.settings = None
        self.close_session()

    def request_session(self, then: Callable[[Session], None] | None = None) -> OpenTask | None:
        """Call `then(session)` once the session is open: at once where it is, else when
        its opening (started now if needed) succeeds; returns the opening task, if any."""
        if self.settings is None:
            raise TileSAMError(NO_RASTER)
        if self.session is not None:
            if then is not None:
                then(self.session)
            return None
        if then is not None:
            self.waiting.append(then)
        if self.opening is None:
            self.opening = OpenTask(self.settings, self._opened).start()
            self.on_opening(self._opening_text())
        return self.opening

    def _opening_text(self) -> str:
        name, model = Path(self.settings.raster).name, self.settings.model
        clicks = f" {len(self.queued)} click(s) answered once it is." if self.queued else ""
        return f"Opening {name} with {model}...{clicks}"

    def _opened(self, task: OpenTask) -> None:  # the GUI thread, as the opening ends
        self.opening = None
        queued, self.queued = self.queued, []
        waiting, self.waiting = self.waiting, []
        self.on_opening(None)
        if task.session is None or task.isCanceled():
            if task.session is not None:  # cancelled in QGIS's task bar, after opening
                task.session.close()
            cancelled = "TileSAM: opening cancelled; click or Compute embeddings to retry."
            self.notify(task.error or cancelled, 2 if task.error else 1)
            return
        self.session = task.session
        applied = [self._change(change, crs) for change, crs in queued]
        if any(applied):
            self.version += 1
            self.update()
        for then in waiting:
            then(self.session)

    def cancel_opening(self) -> None:
        """Give up the opening (it closes what it opens) with the clicks waiting for it."""
        if self.opening is not None:
            self._drop_opening()
            self.notify("TileSAM: opening cancelled.", 1)

    def _drop_opening(self) -> None:
        opening, self.opening = self.opening, None
        self.queued, self.waiting = [], []
        opening.discard()
        self.on_opening(None)

    def close_session(self) -> None:
        """Give up the session's opening, or close the session: now, or where a task still
        uses it (an embedding, an on-demand segmentation), cancelled, once it has ended."""
        if self.opening is not None:
            self._drop_opening()
        session, self.session, self.pending = self.session, None, None
        if session is not None:
            _maptask.close_session(session)

    # -- prompts ------------------------------------------------------------------------------
    def add_point(self, point: QgsPointXY, label: int) -> None:
        """A click at `point` (canvas CRS): `label` 1 positive, 0 negative."""
        xy = (point.x(), point.y())

        def change(session: Session, crs: Any) -> None:
            self.state.add_point(session, xy, label, crs)
            self.point_bands[int(bool(label))].addPoint(point)

        self._prompted(change)

    def set_box(self, rect: QgsRectangle) -> None:
        """A box dragged over `rect` (canvas CRS)."""
        box = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        self._prompted(lambda s, crs: self.state.set_box(s, box, crs))

    def _prompted(self, change: Callable[[Session, Any], None]) -> None:
        """Apply `change` to the prompt and segment, now or once the session is open."""
        if self.settings is None:  # and `self.layer` may be a deleted layer's
            self.notify(NO_RASTER, 1)
            return
        # The canvas CRS of the click: the canvas may be reprojected before it is answered.
        crs = prompt_crs(self.canvas.mapSettings().destinationCrs(), self.layer.crs())
        if self.session is None:
            self.queued.append((change, crs))
            self.request_session()
            self.on_opening(self._opening_text())
        elif self._change(change, crs):
            self.version += 1
            self.update()

    def _change(self, change: Callable[[Session, Any], None], crs: Any) -> bool:
        """Apply `change` to the prompt; False (and a message) if refused."""
        try:
            change(self.session, crs)
        except TileSAMError as err:
            self.notify(str(err), 1)
            return False
        return True

    # -- the live mask --------------------------------------------------------------------------
    def update(self) -> None:
        """Segment the current prompt: at once where its tiles are embedded, else in a
        background task (the newest prompt wins). An object that reaches tiles not embedded
        yet is shown as far as the cache goes at once, and whole when the task has them."""
        if not self.state.has_object:
            self._show(None)
            return
        session = self.session
        prompt = self.state.prompt(session)
        try:
            result = session.segment(prompt, embed_missing=False)  # never embeds in the GUI
        except TileSAMError as err:  # e.g. a damaged tile: said, as the task would say it
            self.notify(f"TileSAM: {err}", 2)
            return
        if self.commit_version is not None and self.commit_version != self.version:
            self.commit_version = None
            self.notify(
                "TileSAM: the prompt changed before the object was whole: not committed.", 0
            )
        if result.tiles or not result.waiting:  # else the old mask stays until the task
            self._show(result)
            self.shown = self.version
        if not result.waiting and self.commit_version == self.version:
            self.commit_and_say()  # whole from tiles a task embedded for an older prompt
        elif result.waiting and self.pending is None:
            self._segment_in_task(prompt)

    def _segment_in_task(self, prompt: Any) -> None:
        self.notify("TileSAM: embedding the tiles under the prompt (on demand)...", 0)
        session, version = self.session, self.version

        def done(error: Exception | None, result: Any = None) -> None:
            _maptask.release_session(session, task)  # closed now if it was meanwhile
            if self.session is not session:
                return  # closed since (another raster, new settings, unloaded): no one asks
            self.pending = None
            if error is not None:
                lost = " The object was not committed." if self.commit_version is not None else ""
                self.commit_version = None
                self.notify(f"TileSAM: {error}{lost}", 2)
            elif self.version != version:
                self.update()  # the prompt changed meanwhile: segment the newest
            else:
                self._show(result)
                self.shown = version
                if self.commit_version == version:  # asked for while it was shown in part
                    self.commit_and_say()

        task = QgsTask.fromFunction(
            "TileSAM: segmenting", lambda task: session.segment(prompt), on_finished=done
        )
        self.pending = task
        _maptask.use_session(session, task)
        QgsApplication.taskManager().addTask(task)

    def _show(self, result: SegmentResult | None) -> None:
        self.result = result
        if result is None or not result.area:
            self.geometry, self.area = QgsGeometry(), 0.0
        else:
            self.geometry, self.area = result_geometry(result, self.session)
        if self.geometry.isEmpty():
            self.mask_band.reset(QgsWkbTypes.PolygonGeometry)
        else:
            self.mask_band.setToGeometry(self.geometry, self.layer.crs())

    # -- commit and clear ---------------------------------------------------------------------
    def commit(self) -> tuple[QgsVectorLayer, int] | None:
        """Append the live mask to the objects layer (created on first use); returns the
        layer and the object's id, or None when there is no mask, or when the mask is shown
        in part while a task embeds the tiles the object goes on into: it is committed whole
        when the task has it (unless the prompt changes first)."""
        self.commit_version = None
        if self.result is None or self.geometry.isEmpty():
            self.notify("TileSAM: nothing to commit: click an object first.", 1)
            return None
        if self.pending is not None and (self.result.waiting or self.shown != self.version):
            self.commit_version = self.version
            self.notify(
                "TileSAM: the object is still being segmented (it goes on into tiles being "
                "embedded); it is committed whole as soon as it is.",
                0,
            )
            return None
        if self.result.waiting:
            self.notify(
                "TileSAM: the object is drawn only as far as the embedded tiles reach "
                "(embedding the rest failed): click again to segment it again.",
                1,
            )
            return None
        path = self.objects_path or _mapcommit.default_objects_path(self.settings.raster)
        layer = _mapcommit.objects_layer(Path(path), self.layer.crs())
        object_id = _mapcommit.append_object(layer, self.geometry, self.area, self.result.score)
        self.clear()
        return layer, object_id

    def commit_and_say(self) -> tuple[QgsVectorLayer, int] | None:
        """:meth:`commit`, with what came of it said through `notify` (the dock's button, and
        a commit asked for while the object was shown in part, once it is whole)."""
        try:
            committed = self.commit()
        except TileSAMError as err:
            self.notify(str(err), 2)
            return None
        if committed is not None:
            layer, object_id = committed
            self.notify(f"Object {object_id} added to {layer.name()} (unsaved edits).", 0)
        return committed

    def clear(self) -> None:
        """Forget the current object's prompt and mask (and clicks waiting for the session)."""
        self.state, self.queued = PromptState(), []
        if self.opening is not None:
            self.on_opening(self._opening_text())  # no click waits any more
        self.version += 1
        self.commit_version = None
        self.result, self.geometry, self.area = None, QgsGeometry(), 0.0
        self.mask_band.reset(QgsWkbTypes.PolygonGeometry)
        for band in self.point_bands.values():
            band.reset(QgsWkbTypes.PointGeometry)

    def unload(self) -> None:
        """Remove the rubber bands from the canvas and close the session."""
        self.clear()
        self.close_session()
        for band in (self.mask_band, *self.point_bands.values()):
            self.canvas.scene().removeItem(band)
        self.point_bands = {}


def _band(canvas: QgsMapCanvas, kind: Any, colour: QColor) -> QgsRubberBand:
    band = QgsRubberBand(canvas, kind)
    band.setStrokeColor(colour)
    if kind == QgsWkbTypes.PolygonGeometry:
        band.setFillColor(QColor(colour.red(), colour.green(), colour.blue(), 90))
        band.setWidth(2)
    else:
        band.setIcon(QgsRubberBand.ICON_CIRCLE)
        band.setIconSize(10)
        band.setWidth(3)
    return band
