"""Shared by the training tests: one torch thread and a small, fast training config; the
evaluation tests' ``geo_scene`` (a real multi-band GeoTIFF and its labels) importable, as
pytest's importlib mode puts no test folder on the path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tilesam.training.trainer import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def small_config():
    """``small_config(out, **overrides)``: a run of a few small steps into ``out``."""

    def make(out: Path, **overrides) -> TrainConfig:
        settings = dict(
            out_dir=str(out),
            synthetic=("nuclei", "cells"),
            crop=64,
            batch_size=2,
            objects_per_image=2,
            iterations=1,
            epochs=1,
            steps_per_epoch=4,
            save_every=2,
            loss="bce",
        )
        settings.update(overrides)
        return TrainConfig(**settings)

    return make
