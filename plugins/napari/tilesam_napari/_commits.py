"""The commits to ``committed_objects`` of one annotation session, undone newest first.

Every way of committing an object (``C`` on the current object, ``Alt+A`` adding it to the
object selected in ``committed_objects``, a Ctrl+click that takes an object of
``auto_segmentation``, *Fill between slices*) goes through one `Commits`, so that
*Undo commit* undoes them in the order they were made, each all or nothing
(`tilesam_napari._labels.commit`, `tilesam_napari._labels.fill`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from napari.utils.notifications import show_info

from tilesam.errors import TileSAMError
from tilesam_napari import _labels, _layers

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

    from tilesam_napari._labels import Edit, Window
    from tilesam_napari._labels_store import Committed

#: The metadata key of a ``committed_objects`` layer: the image and store it was made for.
COMMITTED_KEY = "tilesam_committed"

#: How to pick the object that ``Alt+A`` adds to, or do without one (``{why}``: no object
#: is selected, and why).
SELECT = (
    "{why}: select the object to add to in committed_objects (its label number, or click it "
    "there with the label picker), or press C to commit a new object."
)


@dataclass(frozen=True)
class _Commit:
    edits: list[Edit]
    on_undo: Callable[[], None] | None  # puts back what the commit took from elsewhere


class Commits:
    """Commits to the labels layer that ``layer()`` returns (None: it was removed)."""

    def __init__(self, layer: Callable[[], Labels | None]) -> None:
        self._layer = layer
        self._done: list[_Commit] = []

    def add(
        self,
        windows: Sequence[Window],
        *,
        overwrite: bool = False,
        on_undo: Callable[[], None] | None = None,
        into: int | None = None,
    ) -> int | None:
        """Write the object of `windows` (one per slice) under the next free id, or `into`
        the committed object of that id, without `overwrite` only over background;
        `on_undo` is called when it is undone. The id becomes the layer's selected label,
        the object the next ``Alt+A`` adds to.

        Returns the id, or None when no pixel changed (no id used, nothing to undo).
        """
        layer = self._labels("press Set up again")
        if into is not None:
            _present(layer, into)
        new_id, edits = _labels.commit(layer.data, windows, overwrite=overwrite, into=into)
        if not self._keep(layer, edits, on_undo):
            return None
        if layer.selected_label != new_id:
            layer.selected_label = new_id
        return new_id

    def selected(self, message: str = SELECT) -> int:
        """The id selected in ``committed_objects`` (what ``Alt+A`` adds to, and *Propagate
        3D* propagates without a current object), if an object there has it; else raise
        `message` (how to select one), its ``{why}`` saying which label is selected."""
        layer = self._labels("press Set up again")
        return _present(layer, int(layer.selected_label), message)

    def snapshot(self) -> np.ndarray:
        """A copy of the committed labels, read now (what is painted afterwards is not in
        it): *Fill between slices*' seed."""
        return np.array(self._labels("press Set up again").data)

    def selected_object(self, message: str = SELECT) -> tuple[int, np.ndarray]:
        """The `selected` id and a labels volume of that object alone, read now (what is
        painted afterwards is not part of it): *Propagate 3D*'s seed without a current
        object."""
        selected = self.selected(message)
        labels = np.asarray(self._labels("press Set up again").data)
        return selected, np.where(labels == selected, labels, 0)

    def fill(self, labels: np.ndarray) -> int:
        """Write the objects of `labels` (a volume; 0: leave as is) under their own ids,
        only over background, as one commit; returns the pixels written (0: nothing to
        undo)."""
        layer = self._labels("press Set up again")
        edits = _labels.fill(layer.data, labels)
        self._keep(layer, edits, None)
        return sum(int(np.count_nonzero(e.after != e.before)) for e in edits)

    def _keep(self, layer: Labels, edits: list[Edit], on_undo: Callable[[], None] | None) -> bool:
        """Remember a write's `edits` for `undo` and show it; False if it changed nothing."""
        if not edits:
            return False
        self._done.append(_Commit(edits, on_undo))
        layer.refresh()
        return True

    def undo(self) -> None:
        """Undo the newest commit (repeatable)."""
        if not self._done:
            raise TileSAMError("Nothing to undo: no commit in this session.")
        layer = self._labels("nothing to undo")
        done = self._done.pop()
        _labels.revert(layer.data, done.edits)
        layer.refresh()
        if done.on_undo is not None:
            done.on_undo()

    def forget(self) -> None:
        """Drop the history (the layer now shows other labels: its commits stay)."""
        self._done = []

    def _labels(self, advice: str) -> Labels:
        layer = self._layer()
        if layer is None:
            raise TileSAMError(f"The committed_objects layer was removed: {advice}.")
        return layer


def _present(layer: Labels, label: int, message: str = SELECT) -> int:
    """`label`, if an object of `layer` has it; else raise `message` saying why not."""
    if label == 0:
        why = "label 0 (the background) is selected in committed_objects"
    elif not _labels.contains(layer.data, label):
        why = f"there is no object {label} in committed_objects"
    else:
        return label
    said = message.format(why=why)
    raise TileSAMError(said[:1].upper() + said[1:])


def add_committed_layer(viewer: napari.Viewer, image: Image, committed: Committed) -> Labels:
    """The ``committed_objects`` layer of `image`'s `committed` labels, marked with the
    image and store they belong to (see `set_aside`)."""
    data = committed.data()
    if _labels.is_on_disk(data):
        show_info(f"TileSAM: committed objects are saved as you go to {_labels.store_path(data)}")
    layer = _layers.add_labels(viewer, image, _layers.COMMITTED, data)
    layer.metadata[COMMITTED_KEY] = {**committed.key, "layer": image.name}
    return layer


def set_aside(layer: Labels | None, committed: Committed) -> bool:
    """Rename a ``committed_objects`` layer made for another image (or kept in another
    store) than `committed`'s: its objects stay in the viewer under a name of their own.
    Returns whether it was set aside."""
    if layer is None:
        return False
    made = layer.metadata.get(COMMITTED_KEY)
    if made is not None and {k: made.get(k) for k in ("image", "store")} == committed.key:
        return False
    made = made or {}
    size = "x".join(str(n) for n in layer.data.shape)
    layer.name = f"{_layers.COMMITTED} ({made.get('layer') or size})"
    return True
