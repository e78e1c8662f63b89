"""Fixtures shared across the test suite."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from tilesam.model import SamModel
from tilesam.models.registry import ARCHITECTURES, build_sam


def _random_tiny(seed: int = 0) -> SamModel:
    arch = dataclasses.replace(ARCHITECTURES["tiny"], image_size=256, embedding_size=16)
    torch.manual_seed(seed)
    return SamModel(
        build_sam(arch), name="tiny-random", architecture=arch, weights_hash=f"random-seed{seed}"
    )


@pytest.fixture(scope="session")
def random_tiny() -> Callable[[int], SamModel]:
    """Build TileSAM's `tiny` architecture at a 256-pixel input with random weights.

    A tile costs milliseconds, so tests of mechanics (geometry, caching, stitching,
    propagation) run fast; such a model's masks mean nothing, so they never test quality.
    """
    return _random_tiny


@pytest.fixture(scope="module")
def model(random_tiny) -> SamModel:
    """A random `tiny` (seed 0): see :func:`random_tiny`."""
    return random_tiny(0)
