"""``tilesam train`` (train or fine-tune a model) and ``tilesam synthesize`` (whole synthetic
images with labels to train on).

`train`'s options default to `tilesam.training.config.TrainConfig`'s fields: an option
not given is left out of the namespace (``argparse.SUPPRESS``) and the config's default
applies, so that building the parser imports neither torch nor the trainer.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from tilesam.cli._options import Command
from tilesam.errors import TileSAMError

_INTEGERS = (
    "crop",
    "batch_size",
    "objects_per_image",
    "iterations",
    "epochs",
    "steps_per_epoch",
    "seed",
    "save_every",
)


_HELP = {
    "crop": "side of the training crops, model-input pixels",
    "batch_size": "crops per step",
    "objects_per_image": "objects prompted per crop",
    "iterations": "corrective clicks simulated per object (SAM's interactive training)",
    "epochs": "epochs",
    "steps_per_epoch": "optimiser steps per epoch",
    "seed": "seed of the data, prompts and untrained weights (a run repeats exactly)",
    "save_every": "write a resumable checkpoint every this many steps",
}


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run folder: checkpoints, history, model.pt")
    option = _option_adder(p)
    option("--base", help="'scratch' (untrained tiny), a model name or a checkpoint")
    option("--images", help="folder of training images")
    option("--labels", help="folder of instance label images (default: --images)")
    option("--val-images", help="folder of validation images")
    option("--val-labels", help="folder of validation labels (default: --val-images)")
    option("--synthetic", help="synthetic kinds to mix in, comma-separated, or 'none'")
    option("--real-fraction", type=float, help="share of steps on the real images")
    for name in _INTEGERS:
        option("--" + name.replace("_", "-"), type=int, help=_HELP[name])
    option("--lr", type=float, help="learning rate (AdamW)")
    option(
        "--mosaic",
        type=float,
        help="share of steps whose crops form one field (teaches the decoder to leave out "
        "look-alike objects far from the prompt)",
    )
    option("--loss", choices=("focal", "bce"), help="focal+dice (SAM) or bce+dice")
    option(
        "--loss-margin",
        type=float,
        help="penalise masks only within the target's box grown by this fraction of its size "
        "(default: everywhere)",
    )
    option("--max-minutes", type=float, help="stop (resumably) after this long")
    option(
        "--freeze-encoder",
        action="store_true",
        help="train prompt encoder and decoder only; real images are then embedded once, "
        "whole, and the decoder trains on them as it runs at inference",
    )
    option(
        "--train-only",
        metavar="PREFIX[,PREFIX]",
        help="train only the parameters whose names start so (e.g. image_encoder.stages.3,"
        "image_encoder.neck: an encoder's last stage); the encoder's normalisation "
        "statistics stay as loaded",
    )
    option(
        "--box-points",
        type=float,
        help="with --freeze-encoder: share of box prompts that also get a click inside the "
        "object and a looser box (the prompt slice-to-slice propagation sends)",
    )
    p.add_argument(
        "--instance-head",
        action="store_true",
        default=argparse.SUPPRESS,
        help="train only an instance head (for `tilesam auto --mode instance|prompts`) on "
        "the frozen --base model's embeddings of --images: writes OUT/instance_head.pt; uses "
        "--base (default: tiny), --images, --labels, --batch-size, --lr, --epochs x "
        "--steps-per-epoch, --max-minutes, --seed, --device",
    )
    option("--device", help="cpu, cuda, mps (default: the fastest available)")
    option(
        "--trust-checkpoint",
        action="store_true",
        help="allow a --base checkpoint that needs full unpickling (only for files you trust)",
    )


def _option_adder(p: argparse.ArgumentParser) -> Callable[..., None]:
    """``option(...)``: an option left out of the namespace when not given (the config's
    default applies), whose help says that default."""
    from tilesam.training.config import TrainConfig  # plain values: no torch, no trainer

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

    def option(*names: str, **kwargs: Any) -> None:
        default = defaults.get(names[0].lstrip("-").replace("-", "_"))
        shown = ",".join(default) if isinstance(default, tuple) else default
        if kwargs.get("action") != "store_true" and shown not in (None, dataclasses.MISSING):
            kwargs["help"] = f"{kwargs.get('help', '')} (default: {shown})".lstrip()
        p.add_argument(*names, default=argparse.SUPPRESS, **kwargs)

    return option


def _run_train(args: argparse.Namespace) -> None:
    if getattr(args, "instance_head", False):
        _run_instance_head(args)
        return
    from tilesam.training.trainer import train

    path = train(_config(args))
    print(f"weights: {path}  (use with --checkpoint {path})")


def _config(args: argparse.Namespace, **defaults: Any) -> Any:
    """The run's `TrainConfig`: the options given, else `defaults`, else the config's own."""
    from tilesam.training.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    if "synthetic" in given:
        text = given["synthetic"]
        given["synthetic"] = () if text in ("", "none") else tuple(text.split(","))
    if "train_only" in given:
        given["train_only"] = tuple(p for p in given["train_only"].split(",") if p)
    return TrainConfig(out_dir=args.out, **{**defaults, **given})


def _run_instance_head(args: argparse.Namespace) -> None:
    from tilesam.evaluate.datasets import LabelledImageFolder
    from tilesam.training.config import SCRATCH
    from tilesam.training.instance_head import train_instance_head
    from tilesam.training.trainer import load_base

    config = _config(args, base="tiny")
    if config.base == SCRATCH:
        raise TileSAMError(
            "--instance-head learns on a trained model's embeddings: give --base NAME or a "
            "checkpoint (default: tiny), not 'scratch'."
        )
    if config.images is None:
        raise TileSAMError("--instance-head trains on your annotated images: give --images.")
    path = train_instance_head(
        load_base(config, config.device),
        LabelledImageFolder(config.images, config.labels),
        args.out,
        steps=config.epochs * config.steps_per_epoch,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        max_minutes=config.max_minutes,
    )
    print(f"instance head: {path}  (use with tilesam auto --instance-head {path})")


def _synthesize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="folder to write name.tif / name_labels.tif into")
    p.add_argument(
        "--kinds",
        default="nuclei,nuclei,cells,ct,aerial",
        help="kinds drawn in turn, comma-separated (repeat one to weight it)",
    )
    p.add_argument("--count", type=int, default=200, help="images to write (default: 200)")
    p.add_argument("--seed", type=int, default=1, help="seed: the same images again (default: 1)")
    p.add_argument("--max-zoom", type=float, default=6.0, help="largest magnification")


def _run_synthesize(args: argparse.Namespace) -> None:
    from tilesam.training.synthetic.folder import write_synthetic_folder

    paths = write_synthetic_folder(
        args.out, args.kinds.split(","), args.count, args.seed, max_zoom=args.max_zoom
    )
    print(f"wrote {len(paths)} images with their labels to {args.out}")


COMMANDS = (
    Command("train", "train or fine-tune a model (resumes from --out)", _train_options, _run_train),
    Command(
        "synthesize",
        "write whole synthetic images with labels (for train --freeze-encoder)",
        _synthesize_options,
        _run_synthesize,
    ),
)
