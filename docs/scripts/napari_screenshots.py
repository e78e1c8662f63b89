"""Screenshots of the TileSAM napari plugin for docs/napari.md, from a real viewer.

Drives the dock widget and its controller exactly as a user (or the napari console) would,
then saves the whole window:

* ``docs/images/napari_2d.png``: the nuclei sample (a field ``tiny`` never saw), three
  committed objects, a current object from a positive and a negative click, and a box
  prompt;
* ``docs/images/napari_embedding.png``: the large mosaic sample while *Compute
  embeddings* runs in its worker (progress, time left, cancel);
* ``docs/images/napari_3d.png``: the CT-like volume (millimetre spacing), an object clicked
  on one slice and propagated through the volume;
* ``docs/images/napari_geo.png``: the georaster sample placed on its map grid, fields
  boxed and committed (their outlines: the ground truth);
* ``docs/images/napari_auto.png``: the nuclei sample after *Segment everything*, a few of
  its objects moved into ``committed_objects`` by Ctrl+click, the object table in napari's
  features table widget.

The model is the default ``tiny`` when its weights are available, else ``--checkpoint``,
else the randomly initialised test checkpoint (then the masks show the workflow, not
real segmentations). Needs a display: ``xvfb-run -a python docs/scripts/napari_screenshots.py
[--scene 2d embedding 3d geo auto]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images"
TEST_CHECKPOINT = ROOT / "tests" / "data" / "fixtures" / "sam1_small_fp16.pth"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="checkpoint file (default: tiny, else test one)")
    parser.add_argument("--scene", nargs="+", choices=SCENES, default=list(SCENES))
    args = parser.parse_args()
    import napari

    settings = _settings(args.checkpoint)
    print(f"model: {settings.checkpoint or settings.model}")
    for scene in (SCENES[name] for name in args.scene):
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1400, 860)
        path = scene(viewer, settings)
        print(f"wrote {path}")
        viewer.close()


def _settings(checkpoint: str | None):
    from tilesam_napari._session import Settings

    from tilesam.models.registry import model_entry
    from tilesam.models.weights import bundled_path, cached_path

    if checkpoint:
        return Settings(checkpoint=checkpoint)
    entry = model_entry("tiny")
    if bundled_path(entry) or cached_path(entry):
        return Settings(model="tiny")
    return Settings(checkpoint=str(TEST_CHECKPOINT))


def _wait(condition, timeout: float = 300.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not condition() and time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def _save(viewer, name: str, *, fit: bool = False) -> Path:
    from qtpy.QtWidgets import QApplication

    for _ in range(5):  # let the canvas and the dock widget paint
        QApplication.processEvents()
        time.sleep(0.05)
    if fit:  # fit the image to the canvas as laid out beside the dock widget
        viewer.reset_view()
        QApplication.processEvents()
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False)
    return path


def _dock(viewer, settings):
    import tilesam_napari

    annotator = tilesam_napari.annotator(viewer)
    from tilesam_napari._widget import docked_widget

    widget = docked_widget(viewer)
    widget.form.set_settings(settings)
    return annotator, widget


def scene_2d(viewer, settings) -> Path:
    from tilesam_napari._sample_data import nuclei

    (image, meta, _), (truth, _, _) = nuclei()
    viewer.add_image(image, **meta)
    ann, widget = _dock(viewer, settings)
    widget.setup()
    # Click the middle of a few ground-truth nuclei, as a user would.
    for label in (36, 60, 103):
        y, x = np.argwhere(truth == label).mean(0)
        ann.segment(points=[(y, x)])
        ann.commit()
    points = viewer.layers["prompts"]
    y, x = np.argwhere(truth == 119).mean(0)
    points.add([[y, x]])
    points.feature_defaults = {"label": False}
    points.add([np.argwhere(truth == 81).mean(0)])  # the neighbour: not this one
    _wait(lambda: not ann.busy)
    viewer.layers["box_prompts"].add_rectangles(np.array([[273, 300], [299, 331]]))
    _wait(lambda: not ann.busy)
    viewer.layers.selection.active = points
    return _save(viewer, "napari_2d.png")


def scene_embedding(viewer, settings) -> Path:
    import tempfile
    from dataclasses import replace

    from tilesam_napari._sample_data import mosaic

    ((image, meta, _),) = mosaic()
    viewer.add_image(image, **meta)
    ann, widget = _dock(viewer, settings)
    cache = Path(tempfile.mkdtemp(prefix="tilesam-shot-")) / "mosaic.zarr"
    widget.form.set_settings(replace(settings, cache=str(cache), tile_size=512, halo=32))
    job = widget.compute_embeddings()
    _wait(lambda: widget.progress.value >= 6 or job.finished)
    path = _save(viewer, "napari_embedding.png")
    job.cancel()
    _wait(lambda: job.finished)
    return path


def scene_3d(viewer, settings) -> Path:
    from tilesam_napari._sample_data import ct_volume

    (image, meta, _), (truth, truth_meta, _) = ct_volume()
    layer = viewer.add_image(image, **meta)
    ann, widget = _dock(viewer, settings)
    widget.setup()
    z = 20
    viewer.dims.set_point(0, layer.data_to_world((z, 0, 0))[0])
    y, x = np.argwhere(truth[z] == 1).mean(0)  # the liver on the middle slice
    viewer.layers["prompts"].add([[z, y, x]])
    _wait(lambda: not ann.busy)
    ann.propagate()
    viewer.layers.selection.active = viewer.layers["prompts"]
    return _save(viewer, "napari_3d.png")


def scene_geo(viewer, settings) -> Path:
    from tilesam_napari._sample_data import georaster

    (image, meta, _), (truth, truth_meta, _) = georaster()
    viewer.add_image(image, **meta)
    outline = viewer.add_labels(truth, **{**truth_meta, "visible": True, "opacity": 1.0})
    outline.contour = 1
    ann, widget = _dock(viewer, settings)
    widget.setup()
    # A box around each of a few labelled fields (tiny's single clicks are poor on this
    # 30 m scene; see docs/benchmarks.md), as a user would drag it.
    for label in (1, 2, 3, 5, 6, 7, 9, 12, 16):
        ann.segment(box=_field_box(truth, label))
        ann.commit()
    y0, x0, y1, x1 = _field_box(truth, 4)
    viewer.layers["box_prompts"].add_rectangles(np.array([[y0, x0], [y1, x1]]))
    _wait(lambda: not ann.busy)
    viewer.layers.selection.active = viewer.layers["box_prompts"]
    return _save(viewer, "napari_geo.png", fit=True)


def scene_auto(viewer, settings) -> Path:
    from tilesam_napari import _auto
    from tilesam_napari._sample_data import nuclei

    (image, meta, _), _truth = nuclei()
    viewer.add_image(image, **meta)
    ann, widget = _dock(viewer, settings)
    job = widget.segment_everything()  # sets up, embeds and segments in the worker
    _wait(lambda: job.finished)
    layer = viewer.layers[_auto.AUTO]
    # What a Ctrl+click on each does: the three largest objects become committed ones.
    for label in layer.features.nlargest(3, "area")[_auto.INDEX]:
        _auto.take(ann, layer, int(label))
    layer.contour = 2  # outlines: the committed objects (filled) stand out
    _give_the_table_room(viewer)
    return _save(viewer, "napari_auto.png", fit=True)


def _give_the_table_room(viewer) -> None:
    """Share the right dock area evenly between TileSAM and the features table."""
    from qtpy.QtCore import Qt
    from tilesam_napari._auto import FEATURES_WIDGET

    table, _ = viewer.window.add_plugin_dock_widget(*FEATURES_WIDGET)  # the one open
    tilesam = viewer.window.dock_widgets["TileSAM"].parent()
    viewer.window._qt_window.resizeDocks([tilesam, table], [430, 430], Qt.Orientation.Vertical)


def _field_box(truth: np.ndarray, label: int, pad: int = 2) -> tuple[int, ...]:
    rows, cols = np.nonzero(truth == label)
    (h, w), top, bottom = truth.shape, rows.min() - pad, rows.max() + 1 + pad
    return (max(top, 0), max(cols.min() - pad, 0), min(bottom, h), min(cols.max() + 1 + pad, w))


SCENES = {
    "2d": scene_2d,
    "embedding": scene_embedding,
    "3d": scene_3d,
    "geo": scene_geo,
    "auto": scene_auto,
}


if __name__ == "__main__":
    main()
