"""Shared by the training tests: one torch thread and a small, fast training config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tilesam.training.trainer import TrainConfig


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
