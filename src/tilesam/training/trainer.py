"""Training and fine-tuning: the loop, resumable checkpoints, validation, export.

``train(TrainConfig(...))`` trains the bundled ``tiny`` model from scratch or fine-tunes any
registry model or checkpoint. Everything needed to resume lives in ``out_dir/last.pt``
(written atomically), so a killed run continues where it stopped with the same command.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from tilesam.errors import TileSAMError
from tilesam.io.atomic import atomic_output, make_folder
from tilesam.models.loading import load_model, pick_device
from tilesam.models.registry import ARCHITECTURES, Architecture, build_sam
from tilesam.models.sam_model import SamModel
from tilesam.training.config import SCRATCH, TrainConfig, check_config
from tilesam.training.examples import Example, RealImages, augment, mix, synthetic_examples
from tilesam.training.fields import EmbeddedField, embed_fields, field_batches
from tilesam.training.interactive import MIN_TRAINING_OBJECT_PIXELS, interactive_loss, prompted_loss

if TYPE_CHECKING:
    from tilesam.evaluate.datasets import LabelledImageFolder
    from tilesam.models.sam import Sam

__all__ = ["SCRATCH", "TrainConfig", "Trainer", "train"]


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) training; return the path of the exported model weights."""
    return Trainer(config).run(progress=progress)


class Trainer:
    """Holds the model, optimiser and data streams of one run."""

    def __init__(self, config: TrainConfig) -> None:
        check_config(config)
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.device = pick_device(config.device)
        self.sam, self.architecture = _base_model(config)
        self.crop = _crop_size(config, self.architecture)
        self.sam.to(self.device)
        _check_train_only(self.sam, config)
        params = []
        for name, param in self.sam.named_parameters():
            if _trainable(name, config):
                params.append(param)
            elif config.train_only:  # no gradient: neither computed nor clipped with the rest
                param.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.step = 0
        self.total_steps = config.epochs * config.steps_per_epoch
        self.fields: list[EmbeddedField] | None = None
        self._resume()
        self.validation = _folder(config.val_images, config.val_labels)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pt"

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = _run_state(self.checkpoint_path, self.device)
        if state["architecture"] != self.architecture.to_dict():
            raise TileSAMError(
                f"{self.checkpoint_path} belongs to a run of another architecture: use another "
                "--out folder, or delete that file to start over."
            )
        self._check_same_parameters(state.get("config", {}))
        self.sam.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.config.history = state["history"]

    def _check_same_parameters(self, started: dict) -> None:
        """Refuse to resume a run that trained other parameters (its optimiser's state
        would not fit them)."""
        frozen = started.get("freeze_encoder", self.config.freeze_encoder)
        if frozen != self.config.freeze_encoder:
            flag = "with" if frozen else "without"
            raise TileSAMError(
                f"{self.checkpoint_path} belongs to a run started {flag} --freeze-encoder: "
                "resume it the same way, or use another --out folder."
            )
        only = tuple(started.get("train_only", ()))
        if only != tuple(self.config.train_only):
            given = f"--train-only {','.join(only)}" if only else "no --train-only"
            raise TileSAMError(
                f"{self.checkpoint_path} belongs to a run started with {given}: resume it "
                "the same way, or use another --out folder."
            )

    def run(self, progress: bool = True) -> Path:
        make_folder(self.out_dir)
        if self.step < self.total_steps:  # a finished run only exports again
            self._steps(progress)
        self.save()
        return self.export(self.out_dir / "model.pt")

    def _steps(self, progress: bool) -> None:
        deadline = _deadline(self.config.max_minutes)
        self.fields = self._fields(progress)
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not progress, desc="train")
        stream = self._examples()
        while self.step < self.total_steps and time.monotonic() < deadline:
            loss, iou = self._train_step(stream)
            self.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", iou=f"{iou:.2f}")
            self._record(loss, iou)
            if self.step % self.config.steps_per_epoch == 0:
                self._end_epoch()
            elif self.step % self.config.save_every == 0:
                self.save()
        bar.close()

    def _fields(self, progress: bool) -> list[EmbeddedField] | None:
        """With the encoder frozen, the real images embedded whole (see :mod:`.fields`)."""
        real = _folder(self.config.images, self.config.labels)
        if real is None or not self.config.freeze_encoder:
            return None
        self.sam.eval()  # the encoder's normalisation as at inference
        fields = embed_fields(self.as_model(), real, progress=progress)
        if not fields:
            raise self._no_objects()
        return fields

    def _no_objects(self) -> TileSAMError:
        return TileSAMError(
            f"No object of at least {MIN_TRAINING_OBJECT_PIXELS} pixels (at the model's input "
            f"scale) in the labels of {self.config.labels or self.config.images}: "
            "nothing to train on."
        )

    def _examples(self) -> Iterator[Example] | None:
        """Crops to train on: synthetic ones, and real ones unless the images are fields."""
        # Seeded by the step, so a resumed run draws fresh, reproducible examples.
        rng = np.random.default_rng([self.config.seed, self.step])
        self.rng = rng
        streams, weights = [], []
        if self.config.synthetic:
            streams.append(synthetic_examples(self.config.synthetic, self.crop, rng))
            weights.append(1.0 - (self.config.real_fraction if self.config.images else 0.0))
        real = None if self.fields is not None else _folder(self.config.images, self.config.labels)
        if real is not None:
            images = RealImages(real, self.sam.image_size)
            if images.largest_object() < MIN_TRAINING_OBJECT_PIXELS:
                raise self._no_objects()
            streams.append(images.examples(self.crop, rng))
            weights.append(self.config.real_fraction if self.config.synthetic else 1.0)
        if not streams and self.fields is None:
            raise TileSAMError("No training data: give --images/--labels or synthetic kinds.")
        return mix(streams, weights, rng) if streams else None

    def _train_step(self, stream: Iterator[Example] | None) -> tuple[float, float]:
        self.sam.train()
        if self.config.freeze_encoder or self.config.train_only:
            self.sam.image_encoder.eval()  # batch-norm statistics as loaded
        _set_lr(self.optimizer, self.config.lr, self.step, self.total_steps)
        on_fields = self.fields is not None and (
            stream is None or self.rng.random() < self.config.real_fraction
        )
        loss, stats = self._field_loss() if on_fields else self._crop_loss(stream)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.sam.parameters(), 1.0)
        self.optimizer.step()
        return float(loss.detach()), stats["iou"]

    def _crop_loss(self, stream: Iterator[Example]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = [augment(next(stream), self.rng) for _ in range(self.config.batch_size)]
        return interactive_loss(
            self.sam,
            batch,
            self.rng,
            objects_per_image=self.config.objects_per_image,
            iterations=self.config.iterations,
            encoder_grad=not self.config.freeze_encoder,
            loss=self.config.loss,
            loss_margin=self.config.loss_margin,
            mosaic=self.config.mosaic > 0 and bool(self.rng.random() < self.config.mosaic),
        )

    def _field_loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        """As many windows of the fields as a crop step has objects."""
        n = self.config.batch_size * self.config.objects_per_image
        use_boxes = bool(self.rng.random() < 0.4)
        # Drawn only when asked for, so that runs without box points repeat exactly.
        box_point = use_boxes and self.config.box_points > 0
        box_point = box_point and bool(self.rng.random() < self.config.box_points)
        batches = field_batches(
            self.sam, self.fields, n, self.rng, use_boxes=use_boxes, box_point=box_point
        )
        total, iou = 0.0, 0.0
        for batch in batches:
            loss, stats = prompted_loss(
                self.sam,
                batch.features.to(self.device),
                batch.pe.to(self.device),
                batch.targets,
                batch.prompts,
                batch.offsets,
                self.rng,
                iterations=self.config.iterations,
                loss=self.config.loss,
                loss_margin=self.config.loss_margin,
            )
            share = len(batch.targets) / n
            total, iou = total + share * loss, iou + share * stats["iou"]
        return total, {"iou": iou}

    def _record(self, loss: float, iou: float) -> None:
        history = self.config.history
        if not history or history[-1].get("step_end") is not None:
            history.append({"epoch": len(history), "loss_sum": 0.0, "iou_sum": 0.0, "n": 0})
        entry = history[-1]
        entry["loss_sum"] += loss
        entry["iou_sum"] += 0.0 if math.isnan(iou) else iou
        entry["n"] += 1

    def _end_epoch(self) -> None:
        entry = self.config.history[-1]
        entry["step_end"] = self.step
        entry["train_loss"] = entry["loss_sum"] / max(entry["n"], 1)
        entry["train_iou"] = entry["iou_sum"] / max(entry["n"], 1)
        if self.validation is not None:
            self.save()  # the epoch's steps are kept whatever validation meets
            entry.update(self.validate())
        tqdm.write(
            f"epoch {entry['epoch']}: "
            + ", ".join(
                f"{k}={v:.3f}" for k, v in entry.items() if k.startswith(("train_", "val_"))
            )
        )
        self.save()
        self.export(self.out_dir / "model.pt")

    def validate(self) -> dict[str, float]:
        """Mean IoU from one centre point and from a box on the validation images."""
        from tilesam.evaluate.scoring import evaluate

        result = evaluate(self.as_model(), self.validation, n_clicks=1, progress=False)
        self.sam.train()
        summary = result.summary
        return {"val_point_iou": summary["point"], "val_box_iou": summary["box"]}

    def as_model(self) -> SamModel:
        """The model being trained, ready for inference (it shares the weights)."""
        return SamModel(
            self.sam,
            name="training",
            architecture=self.architecture,
            device=self.device,
            decoder_graphs=False,
        )

    def save(self) -> None:
        """Write everything needed to resume, atomically."""
        state = {
            "model": self.sam.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "architecture": self.architecture.to_dict(),
            "config": dataclasses.asdict(self.config),
            "history": self.config.history,
        }
        _atomic_save(state, self.checkpoint_path)

    def export(self, path: Path, half: bool = False) -> Path:
        """Save the weights as a plain state dict in the official key layout."""
        state = {k: v.detach().cpu() for k, v in self.sam.state_dict().items()}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        _atomic_save(state, Path(path))
        return Path(path)


def _base_model(config: TrainConfig) -> tuple[Sam, Architecture]:
    if config.base == SCRATCH:
        torch.manual_seed(config.seed)
        return build_sam(ARCHITECTURES["tiny"]), ARCHITECTURES["tiny"]
    model = load_base(config, device="cpu")
    return model.sam, model.architecture


def load_base(config: TrainConfig, device: str | None) -> SamModel:
    """The trained model `config.base` names: a registry name or a checkpoint file."""
    is_path = Path(config.base).suffix in (".pt", ".pth") or Path(config.base).is_file()
    return load_model(
        checkpoint=config.base if is_path else None,
        name=None if is_path else config.base,
        device=device,
        trust_checkpoint=config.trust_checkpoint,
    )


def _crop_size(config: TrainConfig, arch: Architecture) -> int:
    """Crops smaller than the input suit only translation-invariant (convolutional) encoders."""
    crop = config.crop or arch.image_size
    if crop != arch.image_size and arch.encoder != "tiny_cnn":
        raise TileSAMError(
            f"A {arch.encoder} encoder trains on full {arch.image_size}-pixel inputs: "
            f"use --crop {arch.image_size} (or leave it unset)."
        )
    if crop % 16 or crop > arch.image_size:
        raise TileSAMError(f"--crop must be a multiple of 16 up to {arch.image_size}, got {crop}.")
    return crop


def _trainable(name: str, config: TrainConfig) -> bool:
    if config.freeze_encoder and name.startswith("image_encoder."):
        return False
    return not config.train_only or name.startswith(tuple(config.train_only))


def _check_train_only(sam: Sam, config: TrainConfig) -> None:
    """Every `train_only` prefix names some parameter, and some parameter stays trainable."""
    if not config.train_only:
        return
    names = [name for name, _ in sam.named_parameters()]
    unknown = [p for p in config.train_only if not any(n.startswith(p) for n in names)]
    if unknown:
        raise TileSAMError(
            f"train_only {', '.join(unknown)}: no parameter of the model starts so "
            "(names look like image_encoder.stages.3, mask_decoder.)."
        )
    if not any(_trainable(name, config) for name in names):
        raise TileSAMError("train_only with freeze_encoder leaves nothing to train.")


def _folder(images: str | None, labels: str | None) -> LabelledImageFolder | None:
    if images is None:
        return None
    from tilesam.evaluate.datasets import LabelledImageFolder

    return LabelledImageFolder(images, labels or images)


def _set_lr(optimizer: torch.optim.Optimizer, base: float, step: int, total: int) -> None:
    """Linear warm-up over 100 steps, then cosine decay to 5 % of the base rate."""
    warm = min(1.0, (step + 1) / 100)
    cosine = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))
    for group in optimizer.param_groups:
        group["lr"] = base * warm * cosine


def _run_state(path: Path, device: torch.device) -> dict:
    """A run's ``last.pt``, checked to be one."""
    not_ours = TileSAMError(
        f"{path} is not a TileSAM training checkpoint: delete it, or use another --out folder."
    )
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for foreign files
        raise not_ours from exc
    keys = {"model", "optimizer", "step", "architecture", "history"}
    if not isinstance(state, dict) or not keys <= state.keys():
        raise not_ours
    return state


def _deadline(max_minutes: float | None) -> float:
    return math.inf if max_minutes is None else time.monotonic() + 60 * max_minutes


def _atomic_save(obj: object, path: Path) -> None:
    with atomic_output(path) as partial:  # a full disk leaves the last checkpoint whole
        torch.save(obj, partial)
