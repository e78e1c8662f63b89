"""The ``TileSAM`` dock widget: the settings forms, embedding with progress, and the actions.

The settings are magicgui forms (`SettingsForm`, and `RunForm` for how Segment everything
and propagation run; the advanced ones fold away in a superqt `QCollapsible`). The widget
only reads them into `Settings` (and run options) and calls the `Annotator`; every error
becomes a notification, and long work (opening a session, embedding, propagation, segment
everything) runs in a `Job`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, Container, ProgressBar, PushButton
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QVBoxLayout, QWidget
from superqt import QCollapsible, QElidingLabel

from tilesam_napari import _auto, _fill
from tilesam_napari._controller import Annotator
from tilesam_napari._io import prefer_tilesam_reader
from tilesam_napari._keys import KEYS, add_to_selected, bind_keys
from tilesam_napari._notify import guarded
from tilesam_napari._predict import everything_steps
from tilesam_napari._run_form import RunForm
from tilesam_napari._session import Opened
from tilesam_napari._settings_form import SettingsForm
from tilesam_napari._workers import Job, Steps

if TYPE_CHECKING:
    import napari

    from tilesam.segment.session import Session

#: Long work run in the worker once the session is open: ``then(session, cancel)`` steps.
Then = Callable[["Session", threading.Event], Steps]
#: The *Segment everything* button's tooltip: where the objects go, how to keep one.
AUTO_TIP = (
    f"Every object of the image (every slice of a volume, linked into 3D objects) into "
    f"{_auto.AUTO}, in the background; then Ctrl+click (Cmd+click on macOS) an object "
    f"there, with {_auto.AUTO} selected, to move it into committed_objects (Undo commit "
    "takes it back)"
)

#: The *Add to selected object* button's tooltip: the flow it is for.
ADD_TIP = (
    f"{KEYS['Alt-A']}, as one commit (Undo commit takes it back); C selects the object it "
    "commits, so C on one slice, then Alt+A on a few more, then Fill between slices [Shift+F]"
)

# The widget of each viewer (by id: napari viewers are not hashable), for `annotator()`.
_WIDGETS: weakref.WeakValueDictionary[int, TileSAMWidget] = weakref.WeakValueDictionary()


def docked_widget(viewer: napari.Viewer) -> TileSAMWidget | None:
    """The TileSAM widget made for `viewer`, if any."""
    widget = _WIDGETS.get(id(viewer))
    return widget if widget is not None and widget.viewer is viewer else None


class TileSAMWidget(QWidget):
    """Dock widget of the TileSAM plugin; ``.annotator`` is its controller and ``.form``
    its settings."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.annotator = Annotator(napari_viewer)
        self.job: Job | None = None
        self.form = SettingsForm(napari_viewer)
        self.runs = RunForm()  # how Segment everything and Propagate 3D run
        self.grid_points = self.runs.grid_points
        self._lay_out(self._embedding_controls(), self._action_controls())
        layers = napari_viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.reordered, layers.renamed):
            event.connect(self.form.image.reset_choices)
        bind_keys(self.viewer, self.annotator, self.propagate, self.fill_between)
        _WIDGETS[id(napari_viewer)] = self
        # Clicks embed tiles on demand: keep the cache state current.
        self.annotator.on_change.append(self._show_cache_state)
        # Made from the console (`tilesam_napari.annotator`) napari has not activated the
        # plugin: files of TileSAM's formats are read by it from now on all the same.
        prefer_tilesam_reader()

    # -- layout -----------------------------------------------------------------------------
    def _lay_out(self, embedding: Container, actions: Container) -> None:
        advanced = QCollapsible("Advanced settings")
        advanced.addWidget(self.form.advanced.native)
        advanced.addWidget(self.runs.everything.native)
        advanced.addWidget(self.runs.propagation.native)
        layout = QVBoxLayout(self)
        parts = (self.form.main.native, advanced, embedding.native, self.status, actions.native)
        for part in parts:
            layout.addWidget(part)
        layout.addStretch(1)

    def _embedding_controls(self) -> Container:
        self.setup_button = _button(
            "Set up", self.open_in_background, "Load the model and open the cache"
        )
        self.embed_button = _button(
            "Compute embeddings", self.compute_embeddings, "Embed every missing tile"
        )
        self.cancel_button = _button("Cancel", self.cancel, "Stop after the current tile or slice")
        self.cancel_button.enabled = False
        self.progress = ProgressBar(min=0, max=1, value=0)
        self.progress.native.setTextVisible(False)  # until there is something to count
        # Eliding: a long cache path must not widen the dock.
        self.status = QElidingLabel("Cache: not set up")
        buttons = _row(self.setup_button, self.embed_button, self.cancel_button)
        return Container(widgets=[buttons, self.progress], labels=False)

    def _action_controls(self) -> Container:
        self.live = CheckBox(text="Live (segment on every prompt change)", value=True)
        self.live.changed.connect(lambda on: setattr(self.annotator, "live", on))
        ann = self.annotator
        buttons = [
            _action("Segment [S]", ann.update, KEYS["S"]),
            _action("Next mask [M]", ann.next_mask, KEYS["M"]),
            _action("Commit [C]", ann.commit, KEYS["C"]),
            _action("Add to selected object [Alt+A]", lambda: add_to_selected(ann), ADD_TIP),
            _action("Clear [Shift+C]", ann.clear, KEYS["Shift-C"]),
            _action("Undo commit", ann.undo, "undo the last commit (repeatable)"),
            _action("Propagate 3D [Shift+S]", self.propagate, KEYS["Shift-S"]),
            _action("Fill between slices [Shift+F]", self.fill_between, KEYS["Shift-F"]),
        ]
        self.auto_button = _button("Segment everything", self.segment_everything, AUTO_TIP)
        buttons.append(self.auto_button)
        rows = [_row(*buttons[i : i + 2]) for i in range(0, len(buttons), 2)]
        return Container(widgets=[self.live, *rows], labels=False)

    # -- actions ----------------------------------------------------------------------------
    def setup(self) -> bool:
        """Build the session from the fields now; False (and a notification) on failure."""
        image, settings = self.form.image.value, self.form.settings()
        session = guarded(lambda: self.annotator.setup(image, settings))
        self._show_cache_state()
        return session is not None

    def open_in_background(
        self, then: Then | None = None, on_done: Callable[[Any], None] | None = None
    ) -> Job | None:
        """Load the model and open the cache in a worker (they can take seconds), then run
        `then`'s steps there too, with progress and cancel; `on_done(result)` gets their
        result in the GUI thread (dropped if the session could not be attached: that error
        was shown)."""
        if self._busy():
            return None
        ann, settings = self.annotator, self.form.settings()
        layer = guarded(lambda: ann.image_layer(self.form.image.value))
        if layer is None:
            return None

        def steps(cancel: threading.Event) -> Steps:
            session = ann.session
            if not ann.is_current(layer, settings):
                # Refused here (e.g. committed objects of another image beside the cache),
                # it ends the job: nothing is attached, nothing embedded.
                opened = ann.open(layer, settings)
                session = opened.session
                yield opened  # a message, not progress: attached below
            return None if then is None else (yield from then(session, cancel))

        def attach(opened: Opened) -> None:  # in the GUI thread, while the worker goes on
            guarded(lambda: ann.attach(layer, opened.session, settings, opened.committed))

        def done(result: Any) -> None:
            if on_done is not None and ann.image is layer:
                guarded(lambda: on_done(result))

        return self._start(steps, on_done=done, on_message=attach)

    def compute_embeddings(self) -> Job | None:
        """Embed the missing tiles in a worker thread, with progress, time left and cancel."""
        return self.open_in_background(
            lambda session, cancel: self.annotator.embed_steps(cancel, session=session)
        )

    def segment_everything(self) -> Job | None:
        """Segment every object of the image (every slice of a volume) in a worker thread,
        setting up first if needed; the objects appear in ``auto_segmentation``."""
        options = self.runs.everything_options()  # read here, in the GUI thread
        by_default = options["mode"] is None
        return self.open_in_background(
            lambda session, cancel: everything_steps(session, cancel, **options),
            on_done=lambda result: _auto.show(self.annotator, result, by_default),
        )

    def propagate(self) -> Job | None:
        """Propagate the current object (none: the object selected in committed_objects,
        from all the slices it is on) through the volume in a worker thread, with the stop
        rules and gap filling of the advanced settings."""
        if self._busy() or (seed := guarded(self.annotator.check_can_propagate)) is None:
            return None
        options = self.runs.propagation_options()  # read here, in the GUI thread
        return self._start(
            lambda cancel: self.annotator.propagate_steps(cancel, seed, **options),
            on_done=self.annotator.show_volume,
            unit="slices",
        )

    def fill_between(self) -> Job | None:
        """Fill each committed object's slices between its annotated slices (interpolated,
        no model) in a worker thread; what is filled is one commit, which Undo commit
        takes back."""
        if self._busy():
            return None
        ready = guarded(lambda: _fill.seed(self.annotator))
        if ready is None:
            return None
        session, labels = ready
        return self._start(
            lambda cancel: _fill.steps(session, labels, cancel),
            on_done=lambda result: guarded(
                lambda: _fill.keep(self.annotator, session, labels, result)
            ),
            unit="slices",
        )

    def cancel(self) -> None:
        """Stop the running job after its current tile or slice."""
        if self.job is not None:
            self.job.cancel()

    # -- jobs and their progress ------------------------------------------------------------
    def _busy(self) -> bool:
        """A job is running (then say so: one job at a time)."""
        if self.job is not None and self.job.running:
            show_info("TileSAM: a job is already running; cancel it first.")
            return True
        return False

    def _start(
        self,
        steps: Callable[[threading.Event], Steps],
        on_done: Callable[[Any], None] | None,
        on_message: Callable[[Any], None] | None = None,
        unit: str = "tiles",
    ) -> Job:
        self.job = Job(
            steps,
            on_progress=self._progress,
            on_done=on_done,
            on_finish=self._finish,
            on_message=on_message,
        )
        self.progress.native.setFormat(f"%v / %m {unit}")
        self.cancel_button.enabled = True
        self.embed_button.enabled = self.auto_button.enabled = False
        return self.job.start()

    def _progress(self, done: int, total: int, seconds_left: float | None) -> None:
        self._show_count(done, total)
        left = "" if seconds_left is None else f", about {_duration(seconds_left)} left"
        self.status.setText(f"Working: {done} / {total}{left}")

    def _finish(self) -> None:
        self.cancel_button.enabled = False
        self.embed_button.enabled = self.auto_button.enabled = True
        self.progress.native.setFormat("%v / %m tiles")
        self._show_cache_state()

    def _show_cache_state(self) -> None:
        if self.job is not None and self.job.running:
            return  # the job's progress owns the label
        session = self.annotator.session
        if session is None:
            self.status.setText("Cache: not set up")
            return
        where = session.cache_path or "memory"
        self._show_count(session.n_done, session.n_tiles)
        self.status.setText(f"Cache: {session.n_done} / {session.n_tiles} tiles embedded ({where})")

    def _show_count(self, done: int, total: int) -> None:
        self.progress.max = total  # first: the bar refuses a value above its maximum
        self.progress.value = done
        self.progress.native.setTextVisible(True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d}"


def _button(text: str, slot: Callable[[], Any], tooltip: str) -> PushButton:
    button = PushButton(text=text, tooltip=tooltip)
    button.changed.connect(lambda: slot())  # not slot: a click's `checked` is no argument
    return button


def _action(text: str, fn: Callable[[], Any], tooltip: str) -> PushButton:
    """A button that calls `fn`, any error a notification (as the keys do)."""
    return _button(text, lambda: guarded(fn), tooltip)


def _row(*buttons: PushButton) -> Container:
    row = Container(widgets=list(buttons), layout="horizontal", labels=False)
    row.margins = (0, 0, 0, 0)  # rows of buttons, not boxes of them
    return row
