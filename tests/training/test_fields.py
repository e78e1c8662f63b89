"""Fine-tuning on whole embedded images: windows as at inference, and real short runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch

import tilesam
from tilesam.decode.embedding import ImageEmbedding
from tilesam.decode.prompt import Prompt
from tilesam.decode.sam_prompt import to_sam_prompt
from tilesam.evaluate.datasets import LabelledImageFolder
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.training.fields import embed_fields, field_batches, window_side
from tilesam.training.synthetic import make_sample
from tilesam.training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def nuclei_folder(tmp_path_factory) -> Path:
    """Two synthetic nuclei images of different shapes, as TIFF pairs on disk."""
    folder = tmp_path_factory.mktemp("nuclei")
    for i, size in enumerate([(160, 200), (200, 120)]):
        sample = make_sample("nuclei", size=size, rng=i)
        tifffile.imwrite(folder / f"img{i}.tif", sample.image)
        tifffile.imwrite(folder / f"img{i}_labels.tif", sample.levels[0].astype(np.uint16))
    return folder


@pytest.fixture(scope="module")
def model() -> tilesam.SamModel:
    torch.manual_seed(0)
    sam = build_sam(ARCHITECTURES["tiny"]).eval()
    return tilesam.SamModel(sam, name="untrained", architecture=ARCHITECTURES["tiny"])


def test_fields_hold_the_embedding_and_the_labels_in_the_input_frame(model, nuclei_folder):
    items = LabelledImageFolder(nuclei_folder, nuclei_folder)
    fields = embed_fields(model, items, progress=False)
    assert len(fields) == 2
    for field, item in zip(fields, items, strict=True):
        labels = np.asarray(item.labels)
        expected = model.embed(item.image).features[0].half()
        assert torch.equal(field.features, expected)
        assert field.labels.shape == (model.image_size, model.image_size)
        # The longest side fills the input; the rest is padding without objects.
        scale = model.image_size / max(labels.shape)
        h, w = (round(n * scale) for n in labels.shape)
        assert field.labels[:h, :w].any() and not field.labels[h:].any()
        assert not field.labels[:, w:].any()
        assert set(field.objects) <= set(np.unique(labels)) - {0}
        for label, (y0, x0, y1, x1) in zip(field.objects, field.boxes, strict=True):
            ys, xs = np.nonzero(field.labels == label)
            assert (y0, x0, y1, x1) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


def test_objects_with_ids_up_to_2_to_the_32_get_their_boxes(model):
    labels = np.zeros((300, 200), np.uint32)
    labels[20:60, 30:90] = 2**32 - 1
    labels[100:140, 10:50] = 7
    image = np.random.default_rng(0).integers(0, 255, (300, 200), dtype=np.uint8)
    item = SimpleNamespace(image=image, labels=labels)
    (field,) = embed_fields(model, [item], progress=False)
    scale = model.image_size / 300
    for label, box in zip(field.objects, field.boxes, strict=True):
        ys, xs = np.nonzero(field.labels == label)
        assert tuple(box) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    assert list(field.objects) == [7, 2**32 - 1]
    assert abs(field.boxes[1][0] - 20 * scale) <= 2


def _inference_windows(model, embedding, point=None, box=None):
    """The windows :meth:`SamModel.predict` decodes the prompt on, in turn, then the grid."""
    points = None if point is None else [point]
    labels = None if point is None else [1]
    prompt = to_sam_prompt(Prompt.make(points, labels, box), embedding)
    grid = model.sam.prompt_encoder.image_embedding_size[0]
    return [*model._decoder_windows(prompt), (0, grid, 0, grid)]


@pytest.mark.parametrize("kind", ["point", "box", "box+point"])
def test_field_batches_decode_each_object_on_a_window_inference_would(model, nuclei_folder, kind):
    items = LabelledImageFolder(nuclei_folder, nuclei_folder)
    fields = embed_fields(model, items, progress=False)[:1]
    field = fields[0]
    rng = np.random.default_rng(3)
    use_boxes, box_point = kind != "point", kind == "box+point"
    batches = field_batches(model.sam, fields, 6, rng, use_boxes=use_boxes, box_point=box_point)
    assert sum(len(b.targets) for b in batches) == 6
    patch = model.image_size // model.sam.prompt_encoder.image_embedding_size[0]
    pe = model.sam.prompt_encoder.get_dense_pe()[0]
    # The field as a model input of its own, to ask predict's window choice.
    frame = ImageEmbedding(field.features[None].float(), (1024, 1024), (1024, 1024))
    for batch in batches:
        side = batch.features.shape[-1]
        for i, target in enumerate(batch.targets):
            x0, y0 = (int(v) for v in batch.offsets[i])
            ty, tx = y0 // patch, x0 // patch
            window = (slice(None), slice(ty, ty + side), slice(tx, tx + side))
            assert torch.equal(batch.features[i], field.features[window].float())
            assert torch.equal(batch.pe[i], pe[window])
            # The target is one whole object of the field, seen through the window.
            ids = np.unique(field.labels[y0 : y0 + side * patch, x0 : x0 + side * patch][target])
            assert len(ids) == 1 and ids[0] in field.objects
            assert target.sum() == (field.labels == ids[0]).sum()
            if use_boxes:
                bx0, by0, bx1, by1 = batch.prompts.boxes[i].tolist()
                ys, xs = np.nonzero(field.labels == ids[0])
                size = max(np.ptp(ys), np.ptp(xs)) + 1  # 4 standard deviations of the jitter
                # (of a box grown by up to 15 % per side, with a click):
                slack = 0.7 if box_point else 0.4
                assert abs(by0 - ys.min()) <= slack * size + 1
                assert abs(bx1 - xs.max() - 1) <= slack * size + 1
                prompt = {"box": (by0, bx0, by1, bx1)}
                if box_point:
                    x, y = batch.prompts.points[i, 0].tolist()
                    assert batch.prompts.labels[i, 0] == 1 and target[int(y) - y0, int(x) - x0]
                    prompt["point"] = (y, x)
                else:
                    assert batch.prompts.points is None
            else:
                x, y = batch.prompts.points[i, 0].tolist()
                assert target[int(y) - y0, int(x) - x0]  # the click lies on its object
                prompt = {"point": (y, x)}
            windows = _inference_windows(model, frame, **prompt)
            assert (ty, ty + side, tx, tx + side) in windows


def test_the_window_side_follows_inference_from_the_first_window_to_the_grid(model):
    sam = model.sam
    assert sam.decoder_windows == (16, 24)
    assert window_side(sam, 5, box=True) == 16  # a box tells the size: the smallest window
    assert window_side(sam, 5, box=False) == 24  # points start on the largest
    assert window_side(sam, 10, box=True) == 24  # 10 tokens and 4 to spare on each side
    assert window_side(sam, 17, box=False) == 64  # reaches every window's edge: the grid


@pytest.fixture
def config(small_config):
    """``config(out, images, **overrides)``: a short frozen-encoder run on ``images``."""

    def make(out: Path, images: Path, **overrides) -> TrainConfig:
        settings = dict(images=str(images), synthetic=(), freeze_encoder=True, loss_margin=0.5)
        return small_config(out, **(settings | {"steps_per_epoch": 3} | overrides))

    return make


def test_frozen_encoder_fine_tuning_trains_the_decoder_on_whole_images(
    tmp_path, nuclei_folder, config
):
    trainer = Trainer(config(tmp_path, nuclei_folder))
    encoder = {k: v.clone() for k, v in trainer.sam.image_encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in trainer.sam.mask_decoder.state_dict().items()}
    weights = trainer.run(progress=False)
    assert trainer.fields is not None and len(trainer.fields) == 2
    for key, value in trainer.sam.image_encoder.state_dict().items():
        assert torch.equal(value, encoder[key]), key  # BatchNorm statistics included
    changed = [
        k
        for k, v in trainer.sam.mask_decoder.state_dict().items()
        if not torch.equal(v, decoder[k])
    ]
    assert "iou_token.weight" in changed and any("hypernetworks" in k for k in changed)
    assert np.isfinite(trainer.config.history[0]["train_loss"])
    assert tilesam.load_model(checkpoint=weights).architecture.encoder == "tiny_cnn"


def test_a_stopped_field_run_resumes_with_its_fields(tmp_path, nuclei_folder, config):
    Trainer(config(tmp_path, nuclei_folder, steps_per_epoch=2)).run(progress=False)
    resumed = Trainer(config(tmp_path, nuclei_folder, steps_per_epoch=2, epochs=2))
    assert resumed.step == 2
    resumed.run(progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 4
    # The same command once more: the run is finished, so it exports without embedding again.
    (tmp_path / "model.pt").unlink()
    finished = Trainer(config(tmp_path, nuclei_folder, steps_per_epoch=2, epochs=2))
    finished._fields = lambda progress: pytest.fail("a finished run embedded its images again")
    assert finished.run(progress=False) == tmp_path / "model.pt"
    assert finished.step == 4 and (tmp_path / "model.pt").is_file()


def test_synthetic_crops_and_fields_mix_in_one_run(tmp_path, nuclei_folder, config):
    trainer = Trainer(config(tmp_path, nuclei_folder, synthetic=("nuclei",), crop=64))
    steps = []
    trainer._field_loss = lambda real=trainer._field_loss: steps.append("field") or real()
    trainer._crop_loss = lambda s, real=trainer._crop_loss: steps.append("crop") or real(s)
    trainer.config.steps_per_epoch = trainer.total_steps = 8
    trainer.run(progress=False)
    assert set(steps) == {"field", "crop"}


@pytest.mark.parametrize("freeze_encoder", [True, False], ids=["fields", "crops"])
def test_labels_without_a_large_enough_object_are_refused(tmp_path, config, freeze_encoder):
    image = (np.random.default_rng(0).random((1024, 1024)) * 255).astype(np.uint8)
    labels = np.zeros((1024, 1024), np.uint16)
    labels[10, 10:13] = 1  # three pixels at the model's scale: a speck, not an object
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_labels.tif", labels)
    run = config(tmp_path / "run", tmp_path, freeze_encoder=freeze_encoder, crop=64)
    with pytest.raises(tilesam.TileSAMError, match="nothing to train on"):
        Trainer(run).run(progress=False)
