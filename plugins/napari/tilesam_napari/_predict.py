"""What the core answers for a prompt: masks as windows, alternatives, propagation.

Functions over a `tilesam.Session` and prompts in image pixels, free of viewer state, so
that they run in the GUI thread or a worker alike.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from dataclasses import replace
from typing import Any

import numpy as np

from tilesam_napari._labels import Window, bounding_window
from tilesam_napari._layers import SlicePrompt


def segment(session, prompt: SlicePrompt, z: int | None):
    """`Session.segment` for `prompt` on slice `z` (None in 2D): the result and its window."""
    result = session.segment(prompt.points, prompt.labels, prompt.box, z=z or 0)
    return result, Window(z, result.offset, result.window)


def is_cached(session, prompt: SlicePrompt, z: int | None) -> bool:
    """Whether the tiles around the prompt are embedded: then only the decoder runs."""
    anchors = list(prompt.points[prompt.labels == 1])
    if prompt.box is not None:
        anchors.append(_anchor(prompt))
    return all(_neighbourhood_done(session, z or 0, y, x) for y, x in anchors)


def candidate_masks(session, prompt: SlicePrompt, z: int | None) -> list[Window]:
    """The model's alternative masks for the prompt in the tile it falls in, best first."""
    grid = session.grid
    ty, tx = grid.tile_for_point(*_anchor(prompt))
    ys, xs = grid.tile_region(ty, tx)
    origin = np.array([ys.start, xs.start], float)
    inside = ((prompt.points >= origin) & (prompt.points < [ys.stop, xs.stop])).all(1)
    box = None
    if prompt.box is not None:
        y0, x0, y1, x1 = np.asarray(prompt.box) - np.tile(origin, 2)
        h, w = ys.stop - ys.start, xs.stop - xs.start
        box = (max(y0, 0), max(x0, 0), min(y1, h), min(x1, w))
    pts = prompt.points[inside] - origin
    pred = session.predictor.predict(
        session.embedding(z or 0, ty, tx),
        points=pts if len(pts) else None,
        labels=prompt.labels[inside] if len(pts) else None,
        box=box,
        multimask=True,
    )
    out = []
    for i in np.argsort(-pred.scores):
        win = bounding_window(z, pred.mask(int(i)))
        out.append(replace(win, offset=(win.offset[0] + ys.start, win.offset[1] + xs.start)))
    return out


def propagate_steps(
    session, seed: np.ndarray, cancel: threading.Event | None = None
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Run `tilesam.propagate_mask` from a seed labels volume in a helper thread, yielding
    its ``(done, total)`` progress; returns the uint32 labels volume.

    The core reports progress through a callback; the helper thread turns it into this
    generator, which a napari worker (or a plain loop) can consume.
    """
    import tilesam

    progress: queue.Queue = queue.Queue()
    outcome: list[Any] = []
    cancel = cancel or threading.Event()

    def run() -> None:
        try:
            outcome.append(
                tilesam.propagate_mask(
                    session.source,
                    mask=seed,
                    session=session,  # its cache: slices embedded once, for both uses
                    callback=lambda done, total: progress.put((done, total)),
                    cancel=cancel,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller below
            outcome.append(exc)

    thread = threading.Thread(target=run, name="tilesam-propagate", daemon=True)
    thread.start()
    try:
        while thread.is_alive() or not progress.empty():
            try:
                yield progress.get(timeout=0.05)
            except queue.Empty:
                continue
    finally:
        # A consumer that stops early (napari quits its workers when the viewer closes)
        # stops the walk too, rather than leaving it to die with the interpreter mid-torch.
        if thread.is_alive():
            cancel.set()
        thread.join()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def run_to_end(steps: Generator[Any, None, Any]) -> Any:
    """Exhaust a steps generator in this thread; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def _neighbourhood_done(session, z: int, y: float, x: float) -> bool:
    """Whether the tile holding ``(y, x)`` and its 8 neighbours (where an object crossing
    its border continues) are embedded."""
    grid = session.grid
    (h, w), (ny, nx) = grid.slice_shape, grid.grid_shape
    ty, tx = grid.tile_for_point(min(max(y, 0), h - 1), min(max(x, 0), w - 1))
    near = [(a, b) for a in range(ty - 1, ty + 2) for b in range(tx - 1, tx + 2)]
    return all(session.store.is_done(z, a, b) for a, b in near if 0 <= a < ny and 0 <= b < nx)


def as_prompt(points, labels, box, shape: tuple[int, int]) -> SlicePrompt:
    """A console prompt, checked by the core's rules."""
    from tilesam.segment.result import Prompt

    checked = Prompt.make(points, labels, box, shape)
    return SlicePrompt(checked.points, checked.labels, checked.box)


def _anchor(prompt: SlicePrompt) -> tuple[float, float]:
    """The pixel that picks the tile for alternative masks: the box centre or the first
    positive point."""
    if prompt.box is not None:
        y0, x0, y1, x1 = prompt.box
        return ((y0 + y1) / 2, (x0 + x1) / 2)
    y, x = prompt.points[int(np.argmax(prompt.labels == 1))]
    return (float(y), float(x))
