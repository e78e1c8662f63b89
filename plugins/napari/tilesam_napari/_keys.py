"""Key bindings: T, S, M, C, Alt+A, Shift+C, Shift+S and Shift+F, on the viewer and on the
TileSAM layers.

napari asks the active layer's keymap before the viewer's, and the Points, Shapes and
Labels layers bind some of these letters themselves, so the keys are bound on both. Alt+A
("add") is bound by none of napari's layers or menus (0.9: Alt+C and Shift+Alt+C copy
screenshots, A and Shift+A select points).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info

from tilesam_napari import _layers
from tilesam_napari._notify import guarded

if TYPE_CHECKING:
    import napari

    from tilesam_napari._controller import Annotator

#: Key → what it does, for the docs and the widget's tooltips.
KEYS = {
    "T": "toggle the label of new points (positive / negative)",
    "S": "segment now (when live mode is off)",
    "M": "next of the model's alternative masks",
    "C": "commit the current object under the next free id",
    "Alt-A": "add the current object to the object selected in committed_objects (its label)",
    "Shift-C": "clear the prompts without committing",
    "Shift-S": (
        "propagate the current object through the volume (3D); with none, the object "
        "selected in committed_objects, from all the slices it is on"
    ),
    "Shift-F": "fill the slices between each committed object's annotated slices (3D, no model)",
}


def actions(
    annotator: Annotator, propagate: Callable[[], Any], fill: Callable[[], Any]
) -> dict[str, Callable[[], Any]]:
    """The function each key calls (`propagate` and `fill` the widget's, which run jobs)."""
    return {
        "T": lambda: toggle_label(annotator),
        "S": annotator.update,
        "M": annotator.next_mask,
        "C": annotator.commit,
        "Alt-A": lambda: add_to_selected(annotator),
        "Shift-C": annotator.clear,
        "Shift-S": propagate,
        "Shift-F": fill,
    }


def bind_keys(
    viewer: napari.Viewer,
    annotator: Annotator,
    propagate: Callable[[], Any],
    fill: Callable[[], Any],
) -> None:
    """Bind the keys on `viewer` now and on the annotation layers as they are created."""
    bound = {key: _handler(fn) for key, fn in actions(annotator, propagate, fill).items()}
    annotator.key_handlers = bound
    _layers.bind_keys_on(viewer, bound)


def _handler(fn: Callable[[], Any]) -> _layers.KeyHandler:
    def handler(_target: Any) -> None:
        guarded(fn)

    return handler


def toggle_label(annotator: Annotator) -> int:
    """Switch new points between positive (1) and negative (0); returns the new label."""
    layer = annotator.layer(_layers.POINTS)
    if layer is None:
        return 1
    label = 0 if bool(layer.feature_defaults["label"][0]) else 1
    layer.feature_defaults = {"label": bool(label)}
    color = _layers.POSITIVE_COLOR if label else _layers.NEGATIVE_COLOR
    layer.current_face_color = color
    show_info(f"TileSAM: new points are {'positive' if label else 'negative'}")
    return label


def add_to_selected(annotator: Annotator) -> int | None:
    """Commit the current object into the object selected in ``committed_objects``
    (``Alt+A``), over background only, as one commit that *Undo commit* takes back, and
    clear the prompts; returns its id (None: committed when the object is whole)."""
    return annotator.commit(into=annotator.commits.selected())
