"""Training and fine-tuning: real short runs on synthetic and real data, resume, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tilesam
from tilesam.models.checkpoint import read_checkpoint
from tilesam.training.losses import sam_loss
from tilesam.training.trainer import Trainer

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DSB = SHARED / "microscopy" / "dsb2018_crop"


def test_scratch_training_exports_a_loadable_official_state_dict(tmp_path, small_config):
    weights = Trainer(small_config(tmp_path)).run(progress=False)
    model = tilesam.load_model(checkpoint=weights)
    assert model.architecture.encoder == "tiny_cnn"
    assert set(read_checkpoint(weights)) == set(model.sam.state_dict())
    image = (np.random.default_rng(0).random((80, 96)) * 200).astype(np.uint8)
    result = model.predict(model.embed(image), points=[(40, 50)], labels=[1])
    assert result.masks.shape == (3, 80, 96)
    assert np.isfinite(result.scores).all()


def test_training_changes_the_weights_and_records_history(tmp_path, small_config):
    trainer = Trainer(small_config(tmp_path))
    before = {k: v.clone() for k, v in trainer.sam.state_dict().items()}
    trainer.run(progress=False)
    after = trainer.sam.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("mask_decoder.") for k in changed)
    assert any(k.startswith("image_encoder.") for k in changed)
    history = trainer.config.history
    assert history[0]["n"] == 4 and np.isfinite(history[0]["train_loss"])


def test_a_stopped_run_resumes_where_it_stopped(tmp_path, small_config):
    first = Trainer(small_config(tmp_path, steps_per_epoch=2))
    first.run(progress=False)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["step"] == 2
    resumed = Trainer(small_config(tmp_path, steps_per_epoch=2, epochs=2))
    assert resumed.step == 2
    for key, value in saved["model"].items():
        assert torch.equal(resumed.sam.state_dict()[key].cpu(), value.cpu())
    resumed.run(progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 4


def test_the_model_in_training_decodes_eagerly(tmp_path, small_config):
    # Traced decoder graphs freeze the weights (tilesam.models.decoder_graphs); these still change.
    model = Trainer(small_config(tmp_path)).as_model()
    assert model._feature_decoder is model.sam


def test_resuming_with_another_architecture_is_refused(tmp_path, small_config):
    Trainer(small_config(tmp_path, steps_per_epoch=2)).run(progress=False)
    config = small_config(tmp_path, base=str(FIXTURES / "sam1_small_fp16.pth"), crop=None)
    with pytest.raises(tilesam.TileSAMError, match="another architecture"):
        Trainer(config)


def test_resuming_needs_a_run_checkpoint_and_the_same_freeze_setting(tmp_path, small_config):
    Trainer(small_config(tmp_path, steps_per_epoch=2)).run(progress=False)
    with pytest.raises(tilesam.TileSAMError, match="started without --freeze-encoder"):
        Trainer(small_config(tmp_path, freeze_encoder=True))
    for content in (b"not a checkpoint", None):
        other = tmp_path / f"other{content is None}"
        other.mkdir()
        if content is None:
            torch.save({"a": 1}, other / "last.pt")  # a torch file, not a run's
        else:
            (other / "last.pt").write_bytes(content)
        with pytest.raises(tilesam.TileSAMError, match="is not a TileSAM training checkpoint"):
            Trainer(small_config(other))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"save_every": 0}, "--save-every 0"), ({"batch_size": 0}, "--batch-size 0"),
     ({"real_fraction": 1.5}, "--real-fraction 1.5"), ({"max_minutes": 0}, "--max-minutes 0"),
     ({"objects_per_image": 0}, "--objects-per-image 0"),
     ({"box_points": -0.1}, "--box-points -0.1")],
)  # fmt: skip
def test_numbers_a_run_cannot_use_are_named(tmp_path, small_config, overrides, named):
    with pytest.raises(tilesam.TileSAMError, match=f"Cannot train with {named}"):
        Trainer(small_config(tmp_path, **overrides))
    (tmp_path / "afile").write_text("")
    with pytest.raises(tilesam.TileSAMError, match="is a file, not a folder"):
        Trainer(small_config(tmp_path / "afile"))
    with pytest.raises(tilesam.TileSAMError, match="--labels needs --images"):
        Trainer(small_config(tmp_path, labels=str(tmp_path)))
    with pytest.raises(tilesam.TileSAMError, match="--box-points needs --freeze-encoder"):
        Trainer(small_config(tmp_path, box_points=0.5))


def test_an_epoch_is_saved_before_its_validation(tmp_path, small_config, monkeypatch):
    trainer = Trainer(small_config(tmp_path, steps_per_epoch=3, save_every=2))
    trainer.validation = object()  # any folder: validate() is replaced below

    def failing_validation():
        raise tilesam.TileSAMError("validation images unusable")

    monkeypatch.setattr(trainer, "validate", failing_validation)
    with pytest.raises(tilesam.TileSAMError, match="unusable"):
        trainer.run(progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 3


def test_crops_smaller_than_the_input_are_refused_for_vit(tmp_path, small_config):
    config = small_config(tmp_path, base=str(FIXTURES / "sam1_small_fp16.pth"), crop=256)
    with pytest.raises(tilesam.TileSAMError, match="--crop 1024"):
        Trainer(config)


@pytest.mark.slow
@pytest.mark.skipif(not DSB.is_dir(), reason="../shared/data is not beside the repository")
def test_fine_tuning_a_vit_checkpoint_with_frozen_encoder(tmp_path, small_config):
    config = small_config(
        tmp_path,
        base=str(FIXTURES / "sam1_small_fp16.pth"),
        crop=None,
        synthetic=(),
        images=str(DSB),
        batch_size=1,
        steps_per_epoch=1,
        freeze_encoder=True,
    )
    trainer = Trainer(config)
    encoder_before = {k: v.clone() for k, v in trainer.sam.image_encoder.state_dict().items()}
    decoder_before = trainer.sam.mask_decoder.state_dict()["iou_token.weight"].clone()
    weights = trainer.run(progress=False)
    for key, value in trainer.sam.image_encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    decoder_after = trainer.sam.mask_decoder.state_dict()["iou_token.weight"]
    assert not torch.equal(decoder_after, decoder_before)
    official = read_checkpoint(FIXTURES / "sam1_small_fp16.pth")
    exported = read_checkpoint(weights)
    assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in official.items()}


def test_sam_loss_trains_only_the_best_candidate():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    good = (target * 20 - 10).expand(1, 1, 8, 8)
    bad = torch.full((1, 1, 8, 8), -10.0)
    logits = torch.cat([bad, good, bad], dim=1)
    loss, best = sam_loss(logits, torch.tensor([[0.0, 1.0, 0.0]]), target)
    assert best.tolist() == [1]
    assert float(loss) < 0.05
    worse, _ = sam_loss(torch.cat([bad, bad, bad], 1), torch.zeros(1, 3), target)
    assert float(worse) > 0.5


def test_mosaic_lays_crops_out_as_one_field_with_each_target_in_its_crop():
    from tilesam.training.interactive import mosaic_field

    features = torch.arange(4.0)[:, None, None, None].expand(4, 2, 3, 5)
    targets = [np.zeros((48, 80), bool) for _ in range(3)]
    for t in targets:
        t[10:20, 30:40] = True
    field, placed = mosaic_field(features, [0, 1, 3], targets)
    assert field.shape == (1, 2, 6, 10)
    # Crop k sits at row k // 2, column k % 2 of the field.
    assert field[0, 0, :3, :5].eq(0).all() and field[0, 0, :3, 5:].eq(1).all()
    assert field[0, 0, 3:, :5].eq(2).all() and field[0, 0, 3:, 5:].eq(3).all()
    assert [p.shape for p in placed] == [(96, 160)] * 3
    assert [tuple(np.argwhere(p).min(0)) for p in placed] == [(10, 30), (10, 110), (58, 110)]
    assert all(p.sum() == 100 for p in placed)


def test_mosaic_training_steps_run(tmp_path, small_config):
    trainer = Trainer(small_config(tmp_path, mosaic=1.0))
    trainer.run(progress=False)
    assert np.isfinite(trainer.config.history[0]["train_loss"])


def test_loss_margin_ignores_predictions_far_from_the_target():
    from tilesam.training.interactive import _near, _scored

    target = np.zeros((32, 32), bool)
    target[4:10, 4:10] = True
    logits = torch.full((1, 3, 16, 16), -10.0)
    logits[:, :, 2:5, 2:5] = 10.0  # the target, at half resolution
    far = logits.clone()
    far[:, :, 11:15, 11:15] = 10.0  # a look-alike far away
    near_leak = logits.clone()
    near_leak[:, :, 5:7, 2:5] = 10.0  # a leak beside the target
    t = torch.from_numpy(target).float()[None, None]
    iou = torch.ones(1, 3)
    region = _near([target], 0.5)
    assert region[0, 0, 1, 1] and not region[0, 0, 20, 20]

    def loss(x, near):
        return float(_scored(x, iou, t, "focal", near)[0])

    assert loss(far, region) == pytest.approx(loss(logits, region))
    assert loss(far, None) > loss(logits, None) + 0.05  # SAM's loss counts it
    assert loss(near_leak, region) > loss(logits, region) + 0.05


def test_training_with_a_loss_margin_runs(tmp_path, small_config):
    trainer = Trainer(small_config(tmp_path, loss_margin=0.5))
    trainer.run(progress=False)
    assert np.isfinite(trainer.config.history[0]["train_loss"])


def test_train_only_changes_the_named_parameters_alone(tmp_path, small_config):
    last = ("image_encoder.stages.3", "image_encoder.neck")
    trainer = Trainer(small_config(tmp_path, train_only=last))
    before = {k: v.clone() for k, v in trainer.sam.state_dict().items()}
    trainer.run(progress=False)
    after = trainer.sam.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(last) for k in changed)
    assert any(k.startswith("image_encoder.stages.3") for k in changed)
    # Batch-norm statistics stay as loaded, also in the trained stages.
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)
    resumed = Trainer(small_config(tmp_path, train_only=last, epochs=2))
    assert resumed.step == 4
    with pytest.raises(tilesam.TileSAMError, match="started with --train-only image_encoder"):
        Trainer(small_config(tmp_path, epochs=2))


def test_train_only_names_prefixes_that_match_nothing(tmp_path, small_config):
    with pytest.raises(tilesam.TileSAMError, match="train_only image_encoder.stage9"):
        Trainer(small_config(tmp_path, train_only=("image_encoder.stage9",)))
    with pytest.raises(tilesam.TileSAMError, match="leaves nothing to train"):
        Trainer(small_config(tmp_path, train_only=("image_encoder.",), freeze_encoder=True))


def test_train_only_from_the_command_line(tmp_path, capsys):
    from tilesam.cli import main

    argv = ["train", "--out", str(tmp_path), "--synthetic", "nuclei", "--steps-per-epoch", "1"]
    assert main([*argv, "--train-only", "image_encoder.neck,image_encoder.stage9"]) == 2
    assert "train_only image_encoder.stage9: no parameter" in capsys.readouterr().err
