"""`Annotator`: the state of one annotation session in a viewer, over a `tilesam.Session`.

It owns no computation: prompts are read from the layers, handed to the core
(`Session.segment`, `Session.compute_tiles`, `tilesam.propagate_mask`), and the answers are drawn
into ``current_object`` and, on commit, ``committed_objects``. The same object is what the
dock widget's buttons, the key bindings and the napari console
(`tilesam_napari.annotator`) drive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_info

from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError
from tilesam_napari import _geo, _labels_store, _layers, _live, _predict, _propagate
from tilesam_napari._alternatives import Alternatives
from tilesam_napari._commits import Commits, add_committed_layer, set_aside
from tilesam_napari._labels import Window, bounding_window
from tilesam_napari._labels_store import Committed
from tilesam_napari._layers import KeyHandler
from tilesam_napari._live import LiveAnswer, LiveJob
from tilesam_napari._notify import guarded, walked
from tilesam_napari._session import Settings, auto_window_note, open_annotation
from tilesam_napari._workers import LatestOnly

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Layer

    from tilesam.segment.result import SegmentResult
    from tilesam.segment.session import Session
    from tilesam_napari._predict import Propagated
    from tilesam_napari._propagate import Seed


class Annotator:
    """Click, box, commit and propagate on one image layer of `viewer`.

    Examples
    --------
    >>> ann = tilesam_napari.annotator(viewer)  # doctest: +SKIP
    >>> ann.segment(points=[(120, 80)])  # (y, x) pixels of the image  # doctest: +SKIP
    >>> ann.commit()  # doctest: +SKIP
    1
    """

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer
        self.settings = Settings()
        self.session: Session | None = None
        self.image: Image | None = None
        self.live = True
        self.current: list[Window] = []  # the live object, one window per slice
        self._prompt: Prompt | None = None  # the prompt of the current object
        # The prompt layers' version (bumped by every edit) and the current object's: a
        # commit takes the object of the prompts as they are, whole.
        self._version = self._shown = 0
        self._whole = True  # the current object is not waiting for tiles being embedded
        # A commit asked for before that object was shown whole: (version, overwrite, into).
        self._pending_commit: tuple[int, bool, int | None] | None = None
        self._alternatives = Alternatives(self._draw, self._unchanged)  # what M cycles
        self.commits = Commits(lambda: self.layer(_layers.COMMITTED))  # what Undo undoes
        self._committed: Committed | None = None  # the labels the committed layer shows
        self._live = LatestOnly(
            self._collect, _live.whole, self._show, _live.from_cache, self._live_failed
        )
        # Set by the widget's key bindings, and bound on the layers made here.
        self.key_handlers: dict[str, KeyHandler] = {}
        # Called after the current object changed (e.g. the widget's cache state).
        self.on_change: list[Callable[[], None]] = []
        _geo.show_map_coordinates(viewer)  # over a georeferenced image, in the status bar

    # -- setup --------------------------------------------------------------------------------
    def setup(self, image: Image | str | None = None, settings: Settings | None = None) -> Session:
        """Build the session for `image` (a layer or its name; default: the selected or only
        image layer) and create the annotation layers; returns the `tilesam.Session`."""
        settings = settings or self.settings
        layer = self.image_layer(image)
        if self.is_current(layer, settings):
            self._ensure_layers()  # same image, same settings: keep the session
            return self.session
        opened = self.open(layer, settings)
        return self.attach(layer, opened.session, settings, opened.committed)

    #: Open the session for a layer and its committed labels, touching no viewer state.
    open = staticmethod(open_annotation)

    def is_current(self, layer: Image, settings: Settings) -> bool:
        """Whether the session is already the one for `layer` with `settings`."""
        return self.session is not None and layer is self.image and settings == self.settings

    def attach(
        self,
        layer: Image,
        session: Session,
        settings: Settings,
        committed: Committed | None = None,
    ) -> Session:
        """Make `session` (from `open` or `open_session`) this annotator's and create the
        layers; `committed` are its image's labels (from `open`; opened here if not given,
        and if refused nothing changes)."""
        if committed is None:
            shape, image = session.source.spatial_shape, session.signature["image"]
            committed = _labels_store.prepare(shape, image, settings.cache)
        if self.session is not None and self.image is not layer:
            self._forget_layers()
        self.session, self.image, self.settings = session, layer, settings
        self._version += 1  # answers for the previous image are not shown
        self._whole, self._pending_commit = True, None
        self._committed = committed
        for note in committed.notes:
            show_info(note)
        committed.notes = []
        note = auto_window_note(settings, session.signature["normalisation"])
        if note:
            show_info(note)
        self._ensure_layers()
        return session

    def require_session(self) -> Session:
        """The session, built with the current settings on first use."""
        return self.session if self.session is not None else self.setup()

    def image_layer(self, image: Image | str | None = None) -> Image:
        """The image layer to segment: `image` (a layer or its name), else the selected
        image layer, the current one, or the first."""
        return _layers.pick_image(self.viewer, image, self.image)

    def _ensure_layers(self) -> None:
        viewer, image = self.viewer, self.image
        shape = self.session.source.spatial_shape
        if set_aside(self.layer(_layers.COMMITTED), self._committed):
            self.commits.forget()  # this image's committed objects are shown instead
        makers = {  # in drawing order, bottom first
            _layers.POINTS: lambda: _layers.add_points(viewer, image),
            _layers.BOXES: lambda: _layers.add_boxes(viewer, image),
            _layers.COMMITTED: lambda: add_committed_layer(viewer, image, self._committed),
            _layers.CURRENT: lambda: _layers.add_labels(
                viewer, image, _layers.CURRENT, np.zeros(shape, np.uint8), opacity=0.5
            ),
        }
        for name, make in makers.items():
            _layers.bind_keys_on(_layers.get_or_add(viewer, name, make), self.key_handlers)
        for name in (_layers.POINTS, _layers.BOXES):
            viewer.layers[name].events.data.disconnect(self._prompts_changed)
            viewer.layers[name].events.data.connect(self._prompts_changed)
        viewer.layers.selection.active = viewer.layers[_layers.POINTS]

    def _forget_layers(self) -> None:
        for name in (_layers.POINTS, _layers.BOXES, _layers.CURRENT):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.current = []
        self.commits.forget()

    def layer(self, name: str) -> Layer | None:
        """An annotation layer by name (``prompts``, ``box_prompts``, ``current_object``,
        ``committed_objects``); None if it was removed."""
        return self.viewer.layers[name] if name in self.viewer.layers else None

    # -- prompts to the current object ------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A live segmentation, or the model's other masks (``M``), is computing."""
        return self._live.busy or self._alternatives.busy

    def _prompts_changed(self, event: Any = None) -> None:
        action = str(getattr(event, "action", "") or "")
        if action.endswith("ing"):  # 'adding', 'removing', 'changing': wait for the result
            return
        self._version += 1
        if self.live:
            self._live.request()

    def update(self) -> None:
        """Segment from the prompt layers now (the ``S`` key): in the GUI thread when the
        prompt's tiles are embedded, else in a worker thread."""
        self._live.request()

    def _collect(self) -> LiveJob | None:
        if self.session is None or self.layer(_layers.POINTS) is None:
            return None
        z = _layers.current_z(self.viewer, self.image)
        prompt = self.prompt(z)
        if not prompt.has_object:
            self._draw([])  # nothing (or only negative points) left: no object
            return None
        return LiveJob(prompt, z, self._version, self.session)

    def prompt(self, z: int | None = None) -> Prompt:
        """The prompts of the layers on slice `z` (2D: all), in image pixels."""
        return _layers.read_prompt(
            self.layer(_layers.POINTS), self.layer(_layers.BOXES), self.image, z
        )

    def _show(self, answer: LiveAnswer) -> None:
        if answer.job.session is not self.session:
            return  # made for an image (or settings) no longer annotated
        self._prompt, self._shown, self._whole = answer.job.prompt, answer.job.version, answer.whole
        self._alternatives.show(answer.windows)
        pending, self._pending_commit = self._pending_commit, None
        if pending is None:
            return
        if pending[0] != self._version:
            show_info("TileSAM: the prompts changed before the object was whole: not committed.")
        elif self._shown == pending[0] and self._whole:
            guarded(lambda: self.commit(overwrite=pending[1], into=pending[2]))
        else:
            self._pending_commit = pending  # an older prompt's answer: wait for this one's

    def _live_failed(self) -> None:
        """A live segmentation failed (said already): a commit waiting for it is not made."""
        if self._pending_commit is not None:
            self._pending_commit = None
            show_info("TileSAM: the object could not be segmented whole: not committed.")

    def segment(
        self,
        points: Any = None,
        labels: Any = None,
        box: tuple[float, float, float, float] | None = None,
        *,
        z: int | None = None,
    ) -> SegmentResult:
        """Segment now (in this thread) and show the result in ``current_object``.

        Without arguments the prompt layers are used; otherwise `points` ``(y, x)``,
        `labels` 1 / 0 and `box` ``(y0, x0, y1, x1)`` are image pixels of slice `z`
        (default: the slice on screen), and they replace the prompts of that slice in the
        ``prompts`` and ``box_prompts`` layers, so that what was segmented is seen (and
        further clicks add to it); on a volume the viewer moves to slice `z`. Returns the
        `tilesam.segment.result.SegmentResult`.
        """
        session = self.require_session()
        if z is None:
            z = _layers.current_z(self.viewer, self.image)
        given = points is not None or box is not None
        prompt = session.prompt(points, labels, box) if given else self.prompt(z)
        result, window = _predict.segment(session, prompt, z)
        if given:
            self._draw_prompt(prompt, z)
        self._version += 1
        self._show(LiveAnswer(LiveJob(prompt, z, self._version, session), [window], True))
        return result

    def _draw_prompt(self, prompt: Prompt, z: int | None) -> None:
        """Show a prompt given in code in the prompt layers, without segmenting again."""
        points, boxes = self.layer(_layers.POINTS), self.layer(_layers.BOXES)
        for layer in (points, boxes):
            if layer is not None:
                with layer.events.data.blocker():
                    _layers.show_prompt(layer, self.image, prompt, z)
                layer.refresh()
        if z is not None and z != _layers.current_z(self.viewer, self.image):
            _layers.show_slice(self.viewer, self.image, z)

    def next_mask(self) -> int | None:
        """Show the next of the model's alternative masks for the prompt (the ``M`` key);
        returns its index (0: the stitched best mask), or None on the first press: a worker
        computes them and the next is shown when they come (unless the prompts change)."""
        if not self.current:
            raise TileSAMError("No current object: click on an object first.")
        z = self.current[0].z
        return self._alternatives.next(LiveJob(self._prompt, z, self._version, self.session))

    def _unchanged(self, job: LiveJob) -> bool:
        """The prompts are as they were for `job`, and its object is the one shown."""
        return job.version == self._version and job.prompt is self._prompt

    def _draw(self, windows: list[Window]) -> None:
        layer = self.layer(_layers.CURRENT)
        if layer is None:
            return
        old = [w for w in self.current if not w.empty]
        self.current = [w for w in windows if not w.empty]
        if old:  # one redraw at the end: the object never flickers
            _layers.set_pixels(layer, old, 0, refresh=not self.current)
        if self.current:
            _layers.set_pixels(layer, self.current, 1, refresh=True)
        for callback in self.on_change:
            callback()

    # -- commit, clear, undo ----------------------------------------------------------------
    def commit(self, *, overwrite: bool = False, into: int | None = None) -> int | None:
        """Commit the current object under the next free id (``C``), or `into` the committed
        object of that id (``Alt+A``: the selected one), and clear the prompts.

        Committed objects are only overwritten with ``overwrite=True``. Returns the id, or
        None where the object is shown in part, from the tiles already embedded, while a
        worker embeds those it goes on into: it is committed whole when they are ready
        (unless the prompts change first).
        """
        if not self.current:
            raise TileSAMError("Nothing to commit: click on an object (or draw a box) first.")
        if not self._alternatives.choice:  # another mask, picked with M, is taken as shown
            if self._live.busy and not (self._whole and self._shown == self._version):
                self._pending_commit = (self._version, overwrite, into)
                show_info(
                    "TileSAM: the object is still being segmented (it goes on into tiles "
                    "being embedded); it is committed whole as soon as it is."
                )
                return None
            if not self._whole:
                raise TileSAMError(
                    "The object is shown only as far as the embedded tiles reach (embedding "
                    "the rest failed, see the message before): press S to segment it again."
                )
        # All or nothing: on disk, a crash during it leaves the objects before it, whole.
        new_id = self.commits.add(self.current, overwrite=overwrite, into=into)
        if new_id is None:
            raise TileSAMError(
                "The current object lies entirely on committed objects: nothing was "
                "committed (use commit(overwrite=True) to replace them)."
            )
        self.clear()
        return new_id

    def undo(self) -> None:
        """Undo the last commit (repeatable), a Ctrl+click's from ``auto_segmentation``
        too."""
        self.commits.undo()

    def clear(self) -> None:
        """Remove all prompts and the current object without committing (``Shift+C``)."""
        for name in (_layers.POINTS, _layers.BOXES):
            layer = self.layer(name)
            if layer is not None and len(layer.data):
                with layer.events.data.blocker():
                    layer.data = np.zeros((0, layer.ndim)) if name == _layers.POINTS else []
                layer.refresh()
        self._alternatives.show([])
        self._version += 1
        self._pending_commit = None

    # -- embedding and propagation ----------------------------------------------------------
    def embed(self, cancel: threading.Event | None = None) -> int:
        """Compute every missing tile embedding now, in this thread; returns how many."""
        start = self.require_session().n_done
        return _predict.run_to_end(self.embed_steps(cancel)) - start

    def embed_steps(
        self, cancel: threading.Event | None = None, batch: int = 2, session: Session | None = None
    ) -> Generator[tuple[int, int], None, int]:
        """Embed the missing tiles of `session` (default: this annotator's), yielding
        ``(done, total)`` after each batch of `batch` tiles; stops cleanly between batches
        when `cancel` is set."""
        return (yield from _predict.embed_steps(session or self.require_session(), cancel, batch))

    def propagate(self, cancel: threading.Event | None = None, **options: Any) -> np.ndarray:
        """Propagate the current object (none: the object selected in ``committed_objects``,
        from all the slices it is on) through the volume now (``Shift+S`` runs it in a
        worker) with `tilesam.propagate_mask`'s `options`: ``rules`` (a mapping of
        `tilesam.volumes.stop_rules.StopRules` thresholds; None: the core's), ``fill_gaps``;
        returns the labels volume shown in ``current_object``."""
        result = _predict.run_to_end(self.propagate_steps(cancel, **options))
        self.show_volume(result)
        return result.labels

    def propagate_steps(
        self, cancel: threading.Event | None = None, seed: Seed | None = None, **options: Any
    ) -> Generator[tuple[int, int], None, Propagated]:
        """Propagate `seed` (`check_can_propagate`'s; None: taken now) with
        `tilesam.propagate_mask` and its `options`, yielding ``(done, total)`` slices;
        returns the labels volume, the walks' stops and the warnings (show them with
        `show_volume`, in the GUI thread)."""
        seed = self.check_can_propagate() if seed is None else seed
        return (yield from _propagate.steps(seed, cancel, **options))

    def check_can_propagate(self) -> Seed:
        """What *Propagate 3D* propagates, read now (`tilesam_napari._propagate.seed`): the
        current object, else the selected committed object; raise if neither, or 2D."""
        session = self.require_session()
        return _propagate.seed(session, self.image, self.current, self.commits)

    def show_volume(self, labels: np.ndarray | Propagated) -> None:
        """Show a propagated labels volume as the current object, one window per slice; for
        a propagation's result, also say what it propagated (a committed object), where and
        why each walk stopped, what would take it further, and its warnings (a walk that
        stopped next to its seed)."""
        stops, warnings = getattr(labels, "stops", ()), getattr(labels, "warnings", ())
        walked(stops, warnings, getattr(labels, "note", ""))
        labels = getattr(labels, "labels", labels)
        mask = np.asarray(labels) > 0
        windows = [bounding_window(z, mask[z]) for z in range(mask.shape[0]) if mask[z].any()]
        self._version += 1
        self._shown, self._whole, self._pending_commit = self._version, True, None
        self._prompt = None  # not the answer to a prompt: M has nothing to offer for it
        self._alternatives.show(windows)
