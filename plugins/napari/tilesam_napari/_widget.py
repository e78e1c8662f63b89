"""The ``TileSAM`` dock widget: settings, embedding with progress, and the action buttons.

The widget only reads its fields into `Settings` and calls the `Annotator`; every error
becomes a notification, and long work (embedding, propagation) runs in a `Job`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from tilesam.models.registry import MODELS
from tilesam_napari._controller import Annotator
from tilesam_napari._keys import bind_keys
from tilesam_napari._session import Settings, open_session
from tilesam_napari._workers import Job, report

_AUTO = "auto"
_DEVICES = (_AUTO, "cpu", "cuda", "mps")
_AXES = (_AUTO, "YX", "YXC", "ZYX", "ZYXC")
# The widget of each viewer (by id: napari viewers are not hashable), for `annotator()`.
_WIDGETS: weakref.WeakValueDictionary[int, TileSAMWidget] = weakref.WeakValueDictionary()


def docked_widget(viewer) -> TileSAMWidget | None:
    """The TileSAM widget made for `viewer`, if any."""
    widget = _WIDGETS.get(id(viewer))
    return widget if widget is not None and widget.viewer is viewer else None


class TileSAMWidget(QWidget):
    """Dock widget of the TileSAM plugin; ``.annotator`` is its controller."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.annotator = Annotator(napari_viewer)
        self.job: Job | None = None
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        bind_keys(self.viewer, self.annotator, self.propagate)
        _WIDGETS[id(napari_viewer)] = self
        # Clicks embed tiles on demand: keep the cache state current.
        self.annotator.on_change.append(self._show_cache_state)

    # -- layout -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.model = QComboBox()
        self.model.addItems(sorted(MODELS, key=lambda n: (n != "tiny", n)))
        self.checkpoint = _path_field("optional: a checkpoint file (overrides the model)")
        self.device = QComboBox()
        self.device.addItems(_DEVICES)
        self.image = QComboBox()
        self.axes = QComboBox()
        self.axes.addItems(_AXES)
        self.cache = _path_field("optional: cache.zarr (default: in memory)")
        self.tile = _spin(0, 8192, 0, "0 = the model's input size, or the cache's")
        self.halo = _spin(0, 1024, 64, "context shared by neighbouring tiles, in pixels")
        form = QFormLayout()
        form.addRow("Model", self.model)
        form.addRow("Checkpoint", _with_browse(self.checkpoint, self._browse_checkpoint))
        form.addRow("Device", self.device)
        form.addRow("Image layer", self.image)
        form.addRow("Axes", self.axes)
        form.addRow("Cache", _with_browse(self.cache, self._browse_cache))
        form.addRow("Tile / halo", _row(self.tile, self.halo))
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(self._embedding_row())
        layout.addLayout(self._action_grid())
        layout.addStretch(1)

    def _embedding_row(self) -> QVBoxLayout:
        self.setup_button = _button(
            "Set up", self.open_in_background, "Load the model and open the cache"
        )
        self.embed_button = _button("Compute embeddings", self.compute_embeddings)
        self.cancel_button = _button("Cancel", self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m tiles")
        self.status = QLabel("Cache: not set up")
        box = QVBoxLayout()
        box.addLayout(_row(self.setup_button, self.embed_button, self.cancel_button))
        box.addWidget(self.progress)
        box.addWidget(self.status)
        return box

    def _action_grid(self) -> QGridLayout:
        self.live = QCheckBox("Live (segment on every prompt change)")
        self.live.setChecked(True)
        self.live.toggled.connect(lambda on: setattr(self.annotator, "live", on))
        ann = self.annotator
        buttons = [
            ("Segment [S]", ann.update),
            ("Next mask [M]", ann.next_mask),
            ("Commit [C]", ann.commit),
            ("Clear [Shift+C]", ann.clear),
            ("Undo commit", ann.undo),
            ("Propagate 3D [Shift+S]", self.propagate),
        ]
        grid = QGridLayout()
        grid.addWidget(self.live, 0, 0, 1, 2)
        for i, (text, fn) in enumerate(buttons):
            grid.addWidget(_button(text, lambda fn=fn: guarded(fn)), 1 + i // 2, i % 2)
        return grid

    # -- settings ---------------------------------------------------------------------------
    def settings(self) -> Settings:
        """The fields as `Settings`."""

        def pick(box: QComboBox) -> str | None:
            return None if box.currentText() == _AUTO else box.currentText()

        return Settings(
            model=self.model.currentText(),
            checkpoint=self.checkpoint.text().strip() or None,
            device=pick(self.device),
            cache=self.cache.text().strip() or None,
            tile_size=self.tile.value() or None,
            halo=self.halo.value(),
            axes=pick(self.axes),
        )

    def set_settings(self, settings: Settings) -> None:
        """Fill the fields from `settings` (e.g. from a script)."""
        self.model.setCurrentText(settings.model)
        self.checkpoint.setText(settings.checkpoint or "")
        self.device.setCurrentText(settings.device or _AUTO)
        self.cache.setText(settings.cache or "")
        self.tile.setValue(settings.tile_size or 0)
        self.halo.setValue(64 if settings.halo is None else settings.halo)
        self.axes.setCurrentText(settings.axes or _AUTO)

    def _refresh_layers(self, event: Any = None) -> None:
        names = [lyr.name for lyr in self.viewer.layers if isinstance(lyr, Image)]
        current = self.image.currentText()
        self.image.clear()
        self.image.addItems(names)
        if current in names:
            self.image.setCurrentText(current)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.pt *.pth)")
        if path:
            self.checkpoint.setText(path)

    def _browse_cache(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Embedding cache (a .zarr folder)")
        if path:
            self.cache.setText(path)

    # -- actions ----------------------------------------------------------------------------
    def setup(self) -> bool:
        """Build the session from the fields now; False (and a notification) on failure."""
        name = self.image.currentText() or None
        session = guarded(lambda: self.annotator.setup(name, self.settings()))
        self._show_cache_state()
        return session is not None

    def open_in_background(self, *, embed: bool = False) -> Job | None:
        """Load the model and open the cache in a worker (they can take seconds), then, with
        `embed`, compute the missing embeddings there too, with progress and cancel."""
        if self.job is not None and self.job.running:
            show_info("TileSAM: a job is already running; cancel it first.")
            return None
        ann, settings = self.annotator, self.settings()
        layer = guarded(lambda: ann.image_layer(self.image.currentText() or None))
        if layer is None:
            return None

        def steps(cancel):
            session = ann.session
            if not ann.is_current(layer, settings):
                session = open_session(layer, settings)
                yield session
            if embed:
                yield from ann.embed_steps(cancel, session=session)

        def attach(session) -> None:  # in the GUI thread, while the worker goes on
            guarded(lambda: ann.attach(layer, session, settings))

        return self._start(steps, on_done=None, on_message=attach)

    def compute_embeddings(self) -> Job | None:
        """Embed the missing tiles in a worker thread, with progress, time left and cancel."""
        return self.open_in_background(embed=True)

    def propagate(self) -> Job | None:
        """Propagate the current object through the volume in a worker thread."""
        if self.job is not None and self.job.running:
            show_info("TileSAM: a job is already running; cancel it first.")
            return None
        if guarded(self.annotator.check_can_propagate) is None:
            return None
        return self._start(self.annotator.propagate_steps, on_done=self.annotator.show_volume)

    def _start(self, steps, on_done, on_message=None) -> Job:
        self.job = Job(
            steps,
            on_progress=self._progress,
            on_done=on_done,
            on_finish=self._finish,
            on_message=on_message,
        )
        self.cancel_button.setEnabled(True)
        self.embed_button.setEnabled(False)
        return self.job.start()

    def cancel(self) -> None:
        """Stop the running job after its current tile or slice."""
        if self.job is not None:
            self.job.cancel()

    def _progress(self, done: int, total: int, seconds_left: float | None) -> None:
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        left = "" if seconds_left is None else f", about {_duration(seconds_left)} left"
        self.status.setText(f"Working: {done} / {total}{left}")

    def _finish(self) -> None:
        self.cancel_button.setEnabled(False)
        self.embed_button.setEnabled(True)
        self._show_cache_state()

    def _show_cache_state(self) -> None:
        if self.job is not None and self.job.running:
            return  # the job's progress owns the label
        session = self.annotator.session
        if session is None:
            self.status.setText("Cache: not set up")
            return
        where = session.cache_path or "memory"
        done, total = session.n_done, session.n_tiles
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        self.status.setText(f"Cache: {done} / {total} tiles embedded ({where})")


def guarded(fn: Callable[[], Any]) -> Any:
    """Call `fn`; any error becomes a notification and the result None."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the user sees a message, never a traceback
        report(exc)
        return None


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d}"


def _button(text: str, slot: Callable[[], Any], tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(lambda: slot())
    button.setToolTip(tip)
    return button


def _path_field(placeholder: str) -> QLineEdit:
    field = QLineEdit()
    field.setPlaceholderText(placeholder)
    return field


def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row


def _with_browse(field: QLineEdit, browse: Callable[[], None]) -> QWidget:
    holder = QWidget()
    row = _row(field, _button("…", browse))
    row.setContentsMargins(0, 0, 0, 0)
    holder.setLayout(row)
    return holder
