"""Images with known objects for segment-everything: discs on every tile border and corner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from tilesam.cache.tiling import TileGrid
from tilesam.evaluate.instances import duplicates_and_splits

# Discs of radius 24 on borders of tiles with a halo of 16: every tile sees a border disc
# cut by its own edge, so no tile alone sees it whole.
TILE, HALO, RADIUS = 256, 16, 24


def border_discs(
    tiles: int = 3, radius: int = RADIUS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, TileGrid]:
    """Bright discs on a dark, noisy field of ``tiles x tiles`` tiles of 256 pixels (halo
    16): one centred on every stretch of every border between owned regions, one on every
    corner where four tiles meet, one in the middle of every tile. Returns the uint8 image,
    its instance labels and the grid."""
    stride = TILE - 2 * HALO
    size = (tiles - 1) * stride + TILE
    grid = TileGrid((size, size), TILE, HALO)
    cuts = [t * stride + HALO for t in range(1, tiles)]  # where owned regions meet
    spans = [grid.inner_region(t, 0)[0] for t in range(tiles)]
    middles = [(s.start + s.stop) / 2 for s in spans]
    centres = [(c, m) for c in cuts for m in middles] + [(m, c) for c in cuts for m in middles]
    centres += [(a, b) for a in cuts for b in cuts] + [(a, b) for a in middles for b in middles]
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.uint16)
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(np.where(labels > 0, 190.0, 25.0), 1.5)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels, grid


@pytest.fixture(scope="session")
def discs() -> tuple[np.ndarray, np.ndarray, TileGrid]:
    """:func:`border_discs` of 3 x 3 tiles (704 pixels): 12 discs on borders, 4 on corners,
    9 inside."""
    return border_discs()


@pytest.fixture(scope="session")
def tiling() -> tuple[int, int]:
    """``(tile_size, halo)`` the disc images are made for."""
    return TILE, HALO


@pytest.fixture(scope="session")
def make_discs():
    """:func:`border_discs` itself, for other sizes."""
    return border_discs


@pytest.fixture(scope="session")
def defects():
    """:func:`tilesam.evaluate.instances.duplicates_and_splits` (duplicated and split true
    objects)."""
    return duplicates_and_splits


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Decode with one torch thread: the batched decoder's many small operations gain
    little from a second one, and on a shared 2-core machine a second thread that waits
    for a busy core slows every operation down (the previous setting is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
