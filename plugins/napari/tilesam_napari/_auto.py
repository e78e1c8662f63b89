"""Segment everything in the viewer: the ``auto_segmentation`` layer and its object table,
and a Ctrl+click that moves one of its objects into ``committed_objects``.

The work is the core's (`tilesam.Session.segment_everything`, run in a worker by the dock
widget through `tilesam_napari._predict.everything_steps`); here its result becomes a labels
layer over the image whose features are the object table, shown by napari's own features
table widget. A taken object is committed through the annotator's `Commits`, the path of
``C``, so that *Undo commit* takes it back and returns it to ``auto_segmentation``.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from napari.utils.notifications import show_error, show_info

from tilesam.errors import TileSAMError
from tilesam_napari import _layers
from tilesam_napari._labels import Window
from tilesam_napari._notify import guarded

if TYPE_CHECKING:
    from napari.layers import Image, Labels

    from tilesam.automatic import AutoResult
    from tilesam_napari._controller import Annotator

AUTO = "auto_segmentation"
#: The modifier of the click that takes an object (Qt's Control: Cmd on macOS). Not Alt: a
#: Labels layer resizes its brush with Alt, and Linux window managers take Alt+drag; Shift
#: and Control only select in a Points layer, never in the active ``auto_segmentation``.
TAKE_MODIFIER = "Control"
#: napari's key from a label to its row of a Labels layer's features (the object ids).
INDEX = "index"
#: napari's own dock widget of the active layer's features (plugin ``napari``).
FEATURES_WIDGET = ("napari", "Features table widget")


def show(annotator: Annotator, result: AutoResult, by_default: bool = False) -> Labels:
    """Show `result` over the annotator's image as the ``auto_segmentation`` layer (replacing
    an earlier one), its table as the layer's features and in napari's features table, and
    make it the active layer, ready for Ctrl+clicks. The notification names the mode used
    (`by_default`: the core chose it for the model)."""
    viewer, image = annotator.viewer, annotator.image
    if AUTO in viewer.layers:
        viewer.layers.remove(AUTO)
    layer = _layers.add_labels(viewer, image, AUTO, result.labels, opacity=0.5)
    # Below the annotation layers: committed and current objects stay in sight over it.
    viewer.layers.move(viewer.layers.index(layer), viewer.layers.index(image) + 1)
    layer.features = features(result)
    layer.mouse_drag_callbacks.append(partial(_clicked, annotator, image))
    _layers.bind_keys_on(layer, annotator.key_handlers)
    viewer.layers.selection.active = layer
    viewer.window.add_plugin_dock_widget(*FEATURES_WIDGET)  # the one open, if it is
    found = "no object" if result.n_objects == 0 else f"{result.n_objects} objects"
    mode = f"{result.mode} mode" + (", the model's default" if by_default else "")
    show_info(f"TileSAM: segment everything ({mode}) found {found} ({AUTO}).")
    return layer


def features(result: AutoResult) -> pd.DataFrame:
    """The result's object table, one row per object, with napari's `INDEX` column (the
    id) first, so that napari finds each label's row (its status bar shows them)."""
    table = pd.DataFrame(result.table)
    table.insert(0, INDEX, table["id"].to_numpy())
    return table


def take(annotator: Annotator, layer: Labels, label: int) -> int:
    """Move object `label` of the ``auto_segmentation`` `layer` into ``committed_objects``
    under the next free id there (over background only, as ``C`` commits); it leaves the
    layer and its table. *Undo commit* puts it back in both. Returns the new id."""
    windows = _object_windows(layer, label)
    if not windows:
        raise TileSAMError(f"There is no object {label} in {AUTO}.")
    row = layer.features[layer.features[INDEX] == label]
    new_id = annotator.commits.add(
        windows, on_undo=partial(_put_back, annotator, layer, windows, label, row)
    )
    if new_id is None:
        raise TileSAMError(
            f"Object {label} of {AUTO} lies entirely on committed objects: nothing was committed."
        )
    _layers.set_pixels(layer, windows, 0, refresh=True)
    layer.features = _without(layer.features, label)
    return new_id


def _clicked(annotator: Annotator, image: Image, layer: Labels, event: Any) -> None:
    """Mouse press on ``auto_segmentation`` (made over `image`): with `TAKE_MODIFIER`, take
    the object under it."""
    if TAKE_MODIFIER not in event.modifiers or event.button != 1:
        return
    if annotator.image is not image:  # set up on another image since: not its objects
        show_error(
            f"TileSAM: this {AUTO} was made on {image.name!r}, and {annotator.image.name!r} is "
            "set up now: set that image up again, or run Segment everything on this one."
        )
        return
    label = layer.get_value(
        event.position,
        view_direction=event.view_direction,
        dims_displayed=event.dims_displayed,
        world=True,
    )
    if not label:  # background, or outside the image
        return
    new_id = guarded(lambda: take(annotator, layer, int(label)))
    if new_id is not None:
        show_info(f"TileSAM: object {label} of {AUTO} committed as object {new_id}.")


def _object_windows(layer: Labels, label: int) -> list[Window]:
    """The object's pixels, one window per slice, read inside its table bounding box (or
    the whole layer, for a label the table does not know, e.g. painted by hand)."""
    data, volume = layer.data, layer.ndim == 3
    rows = layer.features[layer.features[INDEX] == label]
    if len(rows):
        box = rows.iloc[0]
        y0, x0, y1, x1 = (int(box[k]) for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"))
        zs = range(int(box["bbox_z0"]), int(box["bbox_z1"])) if volume else [None]
    else:
        (y0, x0), (y1, x1) = (0, 0), data.shape[-2:]
        zs = range(data.shape[0]) if volume else [None]
    yx = (slice(y0, y1), slice(x0, x1))
    windows = [
        Window(z, (y0, x0), np.asarray(data[yx if z is None else (z, *yx)]) == label) for z in zs
    ]
    return [w for w in windows if not w.empty]


def _put_back(
    annotator: Annotator, layer: Labels, windows: list[Window], label: int, row: pd.DataFrame
) -> None:
    """Undo of a take: the object and its row return to `layer`, unless it was removed (or
    replaced by a new run) meanwhile."""
    if layer not in annotator.viewer.layers:
        return
    _layers.set_pixels(layer, windows, label, refresh=True)
    table = pd.concat([_without(layer.features, label), row])
    layer.features = table.sort_values(INDEX).reset_index(drop=True)


def _without(table: pd.DataFrame, label: int) -> pd.DataFrame:
    return table[table[INDEX] != label].reset_index(drop=True)
