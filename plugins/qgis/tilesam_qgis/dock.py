"""The TileSAM dock: settings, *Compute embeddings*, the map tool, *Commit* and *Clear*.

The dock computes nothing: it fills a `MapSettings` for the `MapAnnotator`, starts the
embedding in a `QgsTask` (`EmbedTask`) and sets the `TileSAMMapTool` on the canvas. While
the annotator opens its session (an `OpenTask`), the dock says so, with a busy bar, and its
button cancels the opening.

The plugin calls :func:`create_dock` in ``initGui``; in ``unload`` it calls the dock's
:meth:`TileSAMDock.unload` (map tool, rubber bands, running task, session) and removes
the dock widget.
"""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsMapLayerProxyModel, QgsRasterLayer
from qgis.gui import QgsFileWidget, QgsMapCanvas, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tilesam.errors import TileSAMError
from tilesam.models.weights import DEFAULT_MODEL
from tilesam_qgis import _mapcommit
from tilesam_qgis._mapannotator import MapAnnotator
from tilesam_qgis._mapsession import MapSettings, default_cache, raster_path
from tilesam_qgis._maptask import EmbedTask, OpenTask
from tilesam_qgis.maptool import TileSAMMapTool

_LEVELS = (Qgis.Info, Qgis.Warning, Qgis.Critical)


def create_dock(iface: Any) -> TileSAMDock:
    """The TileSAM dock for QGIS's main window `iface`, added to its right dock area."""
    dock = TileSAMDock(iface.mapCanvas(), iface)
    iface.addDockWidget(Qt.RightDockWidgetArea, dock)
    return dock


class TileSAMDock(QDockWidget):
    """Settings and actions of the interactive map tool on `canvas`.

    Parameters
    ----------
    canvas : QgsMapCanvas
        The map canvas the tool segments on.
    iface : QgisInterface, optional
        For the message bar and the active layer; None (tests, scripts) shows messages in
        the dock only.
    """

    def __init__(self, canvas: QgsMapCanvas, iface: Any = None) -> None:
        super().__init__("TileSAM")
        self.setObjectName("TileSAMDock")
        self.canvas, self.iface = canvas, iface
        # What the button cancels: the opening *Compute embeddings* waits for, then the
        # embedding (None once it has ended, as scripts wait for).
        self.task: OpenTask | EmbedTask | None = None
        self.annotator = MapAnnotator(canvas, self.notify, self._opening)
        self.tool = TileSAMMapTool(canvas, self.annotator)
        self._build()
        self._connect()
        active = iface.activeLayer() if iface is not None else None
        if isinstance(active, QgsRasterLayer):
            self.layer_box.setLayer(active)
        self._layer_changed(self.layer_box.currentLayer())

    # -- widgets ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.layer_box = QgsMapLayerComboBox()
        self.layer_box.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.model_box = QComboBox()
        self.model_box.setEditable(True)
        self.model_box.addItems(_model_names())
        self.model_box.setCurrentText(DEFAULT_MODEL)
        self.tile_box = QSpinBox()
        self.tile_box.setRange(0, 8192)
        self.tile_box.setSingleStep(64)
        self.tile_box.setSpecialValueText("auto")
        self.cache_box = _file_widget(QgsFileWidget.GetDirectory, "")
        self.objects_box = _file_widget(QgsFileWidget.SaveFile, "GeoPackage (*.gpkg)")
        self.tool_button = QPushButton("Segment on the map")
        self.tool_button.setCheckable(True)
        self.embed_button = QPushButton("Compute embeddings")
        self.commit_button, self.clear_button = QPushButton("Commit"), QPushButton("Clear")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.setWidget(self._layout())

    def _layout(self) -> QWidget:
        form = QFormLayout()
        for label, widget in (
            ("Raster", self.layer_box),
            ("Model", self.model_box),
            ("Tile", self.tile_box),
            ("Cache", self.cache_box),
            ("Objects", self.objects_box),
        ):
            form.addRow(label, widget)
        actions = QHBoxLayout()
        for button in (self.commit_button, self.clear_button):
            actions.addWidget(button)
        column = QVBoxLayout()
        column.addLayout(form)
        for widget in (self.embed_button, self.progress, self.tool_button):
            column.addWidget(widget)
        column.addLayout(actions)
        column.addWidget(self.status)
        column.addStretch(1)
        body = QWidget()
        body.setLayout(column)
        return body

    def _connect(self) -> None:
        self.layer_box.layerChanged.connect(self._layer_changed)
        self.model_box.currentTextChanged.connect(self.configure)
        self.tile_box.valueChanged.connect(self.configure)
        self.cache_box.fileChanged.connect(self.configure)
        self.objects_box.fileChanged.connect(self.configure)
        self.tool_button.toggled.connect(self.activate_tool)
        self.embed_button.clicked.connect(self.compute_embeddings)
        self.commit_button.clicked.connect(self.commit)
        self.clear_button.clicked.connect(self.annotator.clear)
        self.canvas.mapToolSet.connect(self._tool_set)

    # -- settings -----------------------------------------------------------------------------
    def _layer_changed(self, layer: Any) -> None:
        """A new raster: its default cache (beside it) and objects file as placeholders."""
        try:
            path = raster_path(layer) if layer is not None else None
        except TileSAMError as err:
            path = None
            self.notify(str(err), 1)
        self.cache_box.lineEdit().setPlaceholderText(str(default_cache(path)) if path else "")
        objects = _mapcommit.default_objects_path(path) if path else ""
        self.objects_box.lineEdit().setPlaceholderText(str(objects))
        self.configure()

    def settings(self) -> MapSettings:
        """The dock's settings; a `TileSAMError` where the raster cannot be segmented."""
        layer = self.layer_box.currentLayer()
        if layer is None:
            raise TileSAMError("Add a raster layer to the project and choose it in TileSAM.")
        return MapSettings(
            raster_path(layer),
            self.model_box.currentText().strip() or DEFAULT_MODEL,
            self.cache_box.filePath().strip() or None,
            self.tile_box.value() or None,
        )

    def configure(self, *_: Any) -> bool:
        """Hand the settings to the annotator; False (and a message) if they do not fit."""
        try:
            settings = self.settings()
        except TileSAMError as err:
            # No click is answered on a raster no longer chosen (a layer removed from the
            # project meanwhile, and deleted): its session closes, an opening is given up.
            self.annotator.drop_raster()
            self.status.setText(str(err))
            return False
        self.annotator.configure(self.layer_box.currentLayer(), settings)
        self.annotator.objects_path = self.objects_box.filePath().strip() or None
        self.status.setText(f"Cache: {settings.cache_path}")
        return True

    # -- actions ------------------------------------------------------------------------------
    def activate_tool(self, on: bool = True) -> None:
        """Set the map tool on the canvas (or take it off)."""
        if on and self.configure():
            self.canvas.setMapTool(self.tool)
        elif self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)
        self.tool_button.setChecked(self.canvas.mapTool() is self.tool)

    def _tool_set(self, new: Any, old: Any = None) -> None:
        self.tool_button.setChecked(new is self.tool)

    def compute_embeddings(self) -> OpenTask | EmbedTask | None:
        """Start embedding the raster's missing tiles in a `QgsTask` (once the session is
        open: its opening is another), or cancel the opening or embedding under way;
        returns the task started."""
        if self.annotator.opening is not None:
            self.annotator.cancel_opening()
            return None
        if self.task is not None:
            self.task.cancel()
            return None
        try:
            if not self.configure():
                raise TileSAMError(self.status.text())
            opening = self.annotator.request_session(self._embed)
        except TileSAMError as err:
            self.notify(str(err), 2)
            return None
        if opening is not None:
            self.task = opening  # `_embed` replaces it once the session is open
        return self.task

    def _embed(self, session: Any) -> None:
        self.task = EmbedTask(session, self._embedded)
        self.task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self._busy(True)
        self.status.setText(f"Embedding {session.n_tiles - session.n_done} tile(s)...")
        self.task.start()

    def _opening(self, text: str | None) -> None:
        """The annotator opens its session (`text`: what) or is done opening (None)."""
        self.progress.setRange(0, 0 if text else 100)  # (0, 0): a busy bar, no percentage
        if text:
            self.status.setText(text)
        else:
            if isinstance(self.task, OpenTask):
                self.task = None
            if self.annotator.settings is not None:
                self.status.setText(f"Cache: {self.annotator.settings.cache_path}")
        self._busy(bool(text), "Cancel opening")

    def _embedded(self, task: EmbedTask) -> None:
        self.task = None
        self._busy(False)
        session = task.session
        done = f"{session.n_done}/{session.n_tiles} tiles embedded in {session.cache_path}"
        if task.error:
            self.notify(f"TileSAM: embedding failed: {task.error}", 2)
        elif session is not self.annotator.session:  # closed under it, which cancelled it
            why = "the raster or the settings changed"
            self.notify(f"TileSAM: embedding stopped, {why} ({done}; run again to resume).", 1)
            self.configure()  # the dock says what it segments now (or that nothing)
            return
        elif task.isCanceled():
            self.notify(f"TileSAM: embedding cancelled ({done}; run again to resume).", 1)
        else:
            self.progress.setValue(100)
            self.notify(f"TileSAM: {done}.", 0)
        self.status.setText(done)

    def _busy(self, busy: bool, cancel: str = "Cancel embedding") -> None:
        """While opening or embedding, the settings stay as they are and the button cancels."""
        self.embed_button.setText(cancel if busy else "Compute embeddings")
        for widget in (self.layer_box, self.model_box, self.tile_box, self.cache_box):
            widget.setEnabled(not busy)

    def commit(self) -> Any:
        """Append the live object to the objects layer; returns ``(layer, id)`` or None."""
        return self.annotator.commit_and_say()

    def notify(self, text: str, level: int = 0) -> None:
        """`text` in the dock and QGIS's message bar (`level` 0 info, 1 warning, 2 error)."""
        self.status.setText(text)
        if self.iface is not None:
            self.iface.messageBar().pushMessage("TileSAM", text, _LEVELS[level], 8)

    def unload(self) -> None:
        """Stop the embedding, remove the map tool and rubber bands, close the session;
        without waiting for a task under way (an opening, an embedding's batch): the
        session is closed when the last task using it ends."""
        task, self.task = self.task, None
        if isinstance(task, EmbedTask):
            task.forget()  # and the annotator's `close_session` cancels it
        try:
            self.canvas.mapToolSet.disconnect(self._tool_set)
        except TypeError:
            pass
        self.tool.unload()
        self.annotator.unload()


def _model_names() -> list[str]:
    from tilesam.models.registry import MODELS

    return sorted(MODELS, key=lambda name: (name != DEFAULT_MODEL, name))


def _file_widget(mode: Any, file_filter: str) -> QgsFileWidget:
    widget = QgsFileWidget()
    widget.setStorageMode(mode)
    if file_filter:
        widget.setFilter(file_filter)
    return widget
