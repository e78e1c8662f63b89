"""The settings of a training run, and the check that names those a run cannot use.

:class:`TrainConfig` holds plain values only: it is saved with every checkpoint (``last.pt``)
and read back to resume a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tilesam.errors import TileSAMError

__all__ = ["SCRATCH", "TrainConfig", "check_config"]

SCRATCH = "scratch"  # base model: the untrained ``tiny`` architecture


@dataclass
class TrainConfig:
    """Settings of a training run (all plain values, saved with every checkpoint)."""

    out_dir: str
    base: str = SCRATCH
    synthetic: tuple[str, ...] = ("nuclei", "cells", "ct", "aerial")
    images: str | None = None
    labels: str | None = None
    real_fraction: float = 0.5
    val_images: str | None = None
    val_labels: str | None = None
    crop: int | None = 256
    batch_size: int = 4
    objects_per_image: int = 6
    iterations: int = 3
    mosaic: float = 0.0
    lr: float = 1e-3
    loss: str = "focal"
    loss_margin: float | None = None
    weight_decay: float = 0.01
    epochs: int = 10
    steps_per_epoch: int = 200
    max_minutes: float | None = None
    freeze_encoder: bool = False
    # Parameter-name prefixes: train only those (e.g. an encoder's last stages); the encoder's
    # normalisation statistics then stay as loaded. Empty: what freeze_encoder leaves.
    train_only: tuple[str, ...] = ()
    box_points: float = 0.0
    seed: int = 0
    device: str | None = None
    save_every: int = 25
    trust_checkpoint: bool = False
    history: list = field(default_factory=list)


def check_config(config: TrainConfig) -> None:
    """Numbers a run cannot work with, named before any work starts."""
    counts = ("batch_size", "objects_per_image", "epochs", "steps_per_epoch", "save_every")
    bad = [name for name in counts if getattr(config, name) < 1]
    if config.iterations < 0:
        bad.append("iterations")
    fractions = ("real_fraction", "mosaic", "box_points")
    bad += [name for name in fractions if not 0.0 <= getattr(config, name) <= 1.0]
    if config.max_minutes is not None and config.max_minutes <= 0:
        bad.append("max_minutes")
    if bad:
        options = ", ".join(f"--{name.replace('_', '-')} {getattr(config, name)}" for name in bad)
        raise TileSAMError(
            f"Cannot train with {options}: counts, epochs, steps and minutes must be positive "
            "(iterations may be 0), fractions between 0 and 1."
        )
    if Path(config.out_dir).is_file():
        raise TileSAMError(f"--out {config.out_dir} is a file, not a folder: choose another --out.")
    if config.box_points > 0 and not config.freeze_encoder:
        raise TileSAMError(
            "--box-points needs --freeze-encoder: its prompts are drawn on whole embedded "
            "images, which crop training (the encoder learning) does not use."
        )
    for labels, images in (("labels", "images"), ("val_labels", "val_images")):
        if getattr(config, labels) and not getattr(config, images):
            raise TileSAMError(
                f"--{labels.replace('_', '-')} needs --{images.replace('_', '-')}: the folder "
                "of the images those labels belong to."
            )
