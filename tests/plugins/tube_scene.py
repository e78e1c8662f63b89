"""A synthetic volume to annotate a few slices of and fill between: a tube whose round
section slides and widens steadily from slice to slice, with the helpers its tests share
(painting committed objects, waiting for the dock widget's job, Dice). Shared by the tests
of *Fill between slices* and of adding to a committed object (this folder's conftest puts
it on the path: pytest's importlib mode puts no test folder there)."""

from __future__ import annotations

import numpy as np
from tilesam_napari._layers import COMMITTED

SHAPE = (12, 80, 120)


def tube(shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A tube whose round section slides 6 pixels and widens 1 pixel a slice."""
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    return (yy - 40) ** 2 + (xx - (20 + 6 * zz)) ** 2 <= (6 + zz) ** 2


def dice(found: np.ndarray, truth: np.ndarray) -> float:
    return 2 * (found & truth).sum() / (found.sum() + truth.sum())


def paint(widget, painted: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """Paint ``{(id, z): mask}`` into committed_objects (as napari's brush would); a copy
    of the labels."""
    layer = widget.viewer.layers[COMMITTED]
    for (obj, z), mask in painted.items():
        layer.data[z][mask] = obj
    layer.refresh()
    return np.array(layer.data)


def wait_job(qtbot, widget) -> None:
    """Wait until the dock widget's job (one was started) has finished."""
    job = widget.job
    assert job is not None
    qtbot.waitUntil(lambda: not job.running, timeout=120_000)
