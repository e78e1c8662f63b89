"""The napari plugin in a real viewer: click latency and the event loop under load.

Measures, with the TileSAM dock widget in a real napari viewer (Qt, OpenGL canvas):

* ``prompt → screen``: the median (and 90th percentile) time from a change of the
  ``prompts`` layer (its last data event, after a point moved to a random place) to the
  end of the first frame the canvas draws after ``current_object`` changed (its
  ``labels_update`` event), with the embeddings already cached: the decoder, stitching,
  the partial update of the labels layer and the canvas paint, as napari schedules it.
  Clicks that leave the mask as it was draw nothing new and are not counted.
  ``napari Points update`` is the time napari itself needs to change the points layer
  before it announces the change (not counted above). ``decoder only`` is `Session.segment`
  alone on the same prompts,
  so the difference is the plugin's overhead;
* ``event loop``: while the widget's *Compute embeddings* runs in its worker thread, a
  10 ms Qt timer records the gaps between its ticks; the largest gap (and the 99th
  percentile) is how long the viewer could not answer; also the largest gap after the
  first batch of tiles is done. Before it, napari draws the new annotation layers once
  (compiling their shaders is slow on software OpenGL), which belongs to the set-up.

The model is the default ``tiny`` when its weights are available, else a randomly
initialised ``tiny`` (same architecture, same cost; masks meaningless), or ``--model`` /
``--checkpoint``. Needs a display: run it under ``xvfb-run`` on a headless machine.

Examples
--------
    xvfb-run -a python benchmarks/bench_napari.py --json bench_napari.json
    xvfb-run -a python benchmarks/bench_napari.py --checkpoint sam_vit_b_01ec64.pth
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="registry name (default: tiny)")
    parser.add_argument("--checkpoint", help="checkpoint file (overrides --model)")
    parser.add_argument("--clicks", type=int, default=30, help="prompt changes to time")
    parser.add_argument("--json", default="bench_napari.json", help="results file")
    args = parser.parse_args()

    import napari

    workdir = Path(tempfile.mkdtemp(prefix="tilesam-bench-napari-"))
    settings, random_weights = _settings(args, workdir)
    results = {
        "model": settings.checkpoint or settings.model,
        "random_weights": random_weights,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }
    # One viewer per phase: each starts from the same state.
    for key, phase in (("event_loop", _event_loop_during_embedding), ("click", _time_clicks)):
        viewer = napari.Viewer(show=True)
        results[key] = phase(viewer, _dock(viewer), settings, workdir, args)
        viewer.close()
    _print_table(results)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")


def _settings(args, workdir: Path):
    from tilesam_napari._session import Settings

    if args.checkpoint:
        return Settings(checkpoint=args.checkpoint), False
    from tilesam.models.registry import model_entry
    from tilesam.models.weights import bundled_path, cached_path

    entry = model_entry(args.model)
    if bundled_path(entry) or cached_path(entry) or args.model != "tiny":
        return Settings(model=args.model), False
    import torch

    from tilesam.models.registry import ARCHITECTURES, build_sam

    path = workdir / "tiny_random.pt"
    torch.save(build_sam(ARCHITECTURES["tiny"]).state_dict(), path)
    return Settings(checkpoint=str(path)), True


def _dock(viewer):
    from tilesam_napari._widget import TileSAMWidget

    widget = TileSAMWidget(viewer)
    viewer.window.add_dock_widget(widget, name="TileSAM")
    return widget


def _process_until(condition, timeout: float = 60.0) -> None:
    """Run the Qt event loop until `condition()`; the loop idles between 1 ms checks, as
    napari's does, so that worker threads get the CPU (a spinning processEvents would
    hold the GIL and slow them down)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop, timer = QEventLoop(), QTimer()
    end = time.perf_counter() + timeout

    def check() -> None:
        if condition() or time.perf_counter() > end:
            loop.quit()

    timer.timeout.connect(check)
    timer.start(1)
    if not condition():
        loop.exec()
    timer.stop()
    if not condition():
        raise TimeoutError("the viewer did not finish in time")


def _time_clicks(viewer, widget, settings, workdir: Path, args) -> dict:
    """Median time from a prompt change to the first frame drawn with the new mask,
    embeddings cached."""
    from tilesam_napari._layers import CURRENT, POINTS

    from tilesam.samples import load_sample

    image = viewer.add_image(load_sample("nuclei")[0], name="nuclei")
    ann = widget.annotator
    session = ann.setup(image, settings)
    ann.embed()
    points = viewer.layers[POINTS]
    changed: list[float] = []  # when the prompt layer announced its change
    # First in line: the plugin's own callback segments inline, before later ones run.
    points.events.data.connect(lambda e: changed.append(time.perf_counter()), position="first")
    updated: list[float] = []  # when current_object's pixels changed
    viewer.layers[CURRENT].events.labels_update.connect(
        lambda e: updated.append(time.perf_counter())
    )
    drawn: list[float] = []  # when the canvas finished drawing a frame
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    scene.events.draw.connect(lambda e: drawn.append(time.perf_counter()), position="last")
    rng = np.random.default_rng(0)
    clicks = rng.integers(8, 248, size=(args.clicks + 3, 2)).astype(float)
    timings, setter, decoder = [], [], []
    for i, yx in enumerate(clicks):
        t0 = time.perf_counter()
        n_updates = len(updated)
        points.data = yx[None]  # what a click does to the layer
        _process_until(lambda: not ann.busy)
        if len(updated) == n_updates:
            continue  # the same mask as before: nothing to draw
        _process_until(lambda: bool(drawn) and drawn[-1] > updated[-1])
        t_end = next(t for t in drawn if t > updated[-1])
        t_segment = time.perf_counter()
        session.segment(points=[tuple(yx)])
        if i >= 3:  # the first clicks warm up torch and the GL textures
            timings.append((t_end - changed[-1]) * 1000)
            setter.append((changed[-1] - t0) * 1000)
            decoder.append((time.perf_counter() - t_segment) * 1000)
    return {
        "image": "nuclei 256 x 256",
        "median_ms": statistics.median(timings),
        "p90_ms": float(np.percentile(timings, 90)),
        "decoder_only_median_ms": statistics.median(decoder),
        "points_update_median_ms": statistics.median(setter),
        "n": len(timings),
    }


def _event_loop_during_embedding(viewer, widget, settings, workdir: Path, args) -> dict:
    """Largest gap between 10 ms timer ticks while the widget embeds a mosaic.

    The model, the cache and the annotation layers are set up first (in a worker, then
    napari adds the layers, which takes napari a while once per image); the timer runs
    while *Compute embeddings* works.
    """
    from dataclasses import replace

    from qtpy.QtCore import QTimer
    from tilesam_napari._sample_data import mirror_tile

    from tilesam.samples import load_sample

    image = viewer.add_image(mirror_tile(load_sample("nuclei")[0], (2048, 2048)), name="mosaic")
    widget.form.set_settings(replace(settings, cache=str(workdir / "mosaic.zarr")))
    widget.form.image.value = image
    start = time.perf_counter()
    opening = widget.open_in_background()
    _process_until(lambda: opening.finished, timeout=600)
    setup_seconds = time.perf_counter() - start
    # Let napari draw the new layers once (compiling their shaders takes a software
    # OpenGL a few hundred ms): that belongs to the set-up, not to the embedding.
    settle = time.perf_counter() + 1.0
    _process_until(lambda: time.perf_counter() > settle)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    start = time.perf_counter()
    job = widget.compute_embeddings()
    first: list[float] = []  # when the first batch of tiles was done
    job.worker.yielded.connect(lambda v: first.append(time.perf_counter()) if v[0] else None)
    _process_until(lambda: job.finished, timeout=1800)
    seconds = time.perf_counter() - start
    timer.stop()
    gaps = np.diff(ticks) * 1000
    later = np.diff([t for t in ticks if first and t >= first[0]]) * 1000
    return {
        "image": "mosaic 2048 x 2048",
        "tiles": widget.annotator.session.n_tiles,
        "setup_seconds": setup_seconds,
        "embed_seconds": seconds,
        "max_gap_ms": float(gaps.max()),
        "max_gap_after_first_batch_ms": float(later.max()) if later.size else None,
        "p99_gap_ms": float(np.percentile(gaps, 99)),
        "ticks": len(ticks),
    }


def _print_table(r: dict) -> None:
    click, loop = r["click"], r["event_loop"]
    weights = " (random weights: timings hold, masks meaningless)" if r["random_weights"] else ""
    rows = [
        ("prompt -> current_object on screen, median", click["median_ms"], "ms"),
        ("prompt -> current_object on screen, p90", click["p90_ms"], "ms"),
        ("decoder only (Session.segment), median", click["decoder_only_median_ms"], "ms"),
        ("napari Points update before the event, median", click["points_update_median_ms"], "ms"),
        ("event loop max gap while embedding", loop["max_gap_ms"], "ms"),
        ("  after the first batch of tiles", loop["max_gap_after_first_batch_ms"], "ms"),
        ("event loop p99 gap while embedding", loop["p99_gap_ms"], "ms"),
        (f"embedding {loop['tiles']} tiles in the worker", loop["embed_seconds"], "s"),
        ("set up before it (model, cache, napari layers)", loop["setup_seconds"], "s"),
    ]
    print(f"model: {r['model']}{weights}")
    print(f"{'measure':<48} {'value':>12}")
    for name, value, unit in rows:
        print(f"{name:<48} {value:>9.1f} {unit}")


if __name__ == "__main__":
    main()
