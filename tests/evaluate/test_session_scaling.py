"""Evaluation scales each image as a Session opened on its file does: a multi-band GeoTIFF
band by band over the scene, a plain image over one range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from geo_scene import SHAPE, scene_bands, scene_labels, write_geotiff, write_scene_folder

from tilesam import Session, load_model
from tilesam.evaluate.datasets import LabelledImageFolder
from tilesam.evaluate.scoring import evaluate
from tilesam.io import open_image
from tilesam.models.preprocess import prepare_image

CHECKPOINT = Path(__file__).parents[1] / "data/fixtures/sam1_small_fp16.pth"


@pytest.fixture(scope="module")
def model():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the decoder's small steps: one thread on a shared machine
    yield load_model(checkpoint=CHECKPOINT)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory) -> Path:
    return write_scene_folder(tmp_path_factory.mktemp("geo_eval"))


class Recording:
    """The model, with what each ``embed`` was given kept (image and intensity range)."""

    def __init__(self, model) -> None:
        self.model, self.given = model, []

    def embed(self, image, *, intensity=None):
        self.given.append((np.asarray(image), intensity))
        return self.model.embed(image, intensity=intensity)

    def predict(self, embedding, **prompts):
        return self.model.predict(embedding, **prompts)


def _encoder_input(model, image, intensity) -> np.ndarray:
    """The pixels the encoder gets for `image` scaled to `intensity` (SamModel.embed's)."""
    return prepare_image(image, model.image_size, intensity)[0].numpy()


def test_a_geotiff_is_scaled_band_by_band_as_a_session_scales_it(model, scene_folder):
    path = scene_folder / "scene.tif"
    recording = Recording(model)
    evaluate(recording, LabelledImageFolder(scene_folder), n_clicks=1, progress=False)
    [(image, intensity)] = recording.given
    session = Session(path, model)  # in memory: nothing embedded to open it
    pixels = session.source.read_slice(0)
    assert np.array_equal(image, pixels)
    fed = _encoder_input(model, image, intensity)
    assert np.array_equal(fed, _encoder_input(model, pixels, session.intensity))
    # The scene is one where it matters: one pooled range would feed other pixels.
    pooled = _encoder_input(model, image, None)
    assert np.abs(pooled - fed).max() > 100
    item = LabelledImageFolder(scene_folder)[0]
    assert item.normalisation == session.signature["normalisation"]
    assert item.normalisation["method"] == "percentiles-per-band"


def test_the_result_records_each_images_scaling(model, scene_folder):
    result = evaluate(model, LabelledImageFolder(scene_folder), n_clicks=1, progress=False)
    session = Session(scene_folder / "scene.tif", model)
    assert result.info["normalisation"] == {"scene": session.signature["normalisation"]}


def test_a_fourth_band_dropped_is_left_out_of_the_ranges(model, tmp_path):
    """The folder reads a four-band scene's first three bands (the fourth as alpha): they
    are scaled as a session opened with ``bands=(1, 2, 3)`` scales them."""
    labels = scene_labels()
    write_geotiff(tmp_path / "four.tif", scene_bands(labels, 4))
    tifffile.imwrite(tmp_path / "four_labels.tif", labels)
    assert open_image(tmp_path / "four.tif").n_channels == 4  # a session reads all four
    item = LabelledImageFolder(tmp_path)[0]
    session = Session(open_image(tmp_path / "four.tif", bands=(1, 2, 3)), model)
    assert item.image.shape == (*SHAPE, 3)
    assert item.normalisation == session.signature["normalisation"]


@pytest.mark.parametrize(
    "image",
    [
        (np.arange(np.prod(SHAPE)) % 251).astype(np.uint8).reshape(SHAPE),
        (np.arange(np.prod(SHAPE) * 3) % 4001).astype(np.uint16).reshape(*SHAPE, 3),
        (np.arange(np.prod(SHAPE)) % 3001).astype(np.uint16).reshape(SHAPE),
    ],
    ids=["gray-uint8", "rgb-uint16", "gray-uint16"],
)
def test_plain_images_keep_their_own_range(model, tmp_path, image):
    """Where a session takes one range over the image (no georeference), it is the image's
    own: evaluation feeds the encoder what it fed before sessions decided its scaling."""
    tifffile.imwrite(tmp_path / "plain.tif", image)
    tifffile.imwrite(tmp_path / "plain_labels.tif", scene_labels())
    item = LabelledImageFolder(tmp_path)[0]
    session = Session(tmp_path / "plain.tif", model)
    assert item.normalisation == session.signature["normalisation"]
    own = _encoder_input(model, item.image, None)
    assert np.array_equal(_encoder_input(model, item.image, item.intensity), own)
