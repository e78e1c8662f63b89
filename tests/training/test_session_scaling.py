"""Training scales a real image as a Session opened on its file does: a multi-band GeoTIFF
band by band over the scene (whole embedded fields and crops alike), a uint8 image as it is.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from geo_scene import SHAPE, scene_labels, write_scene_folder

from tilesam import Session
from tilesam.evaluate.datasets import LabelledImage, LabelledImageFolder
from tilesam.models.preprocess import prepare_image
from tilesam.training.examples import RealImages
from tilesam.training.fields import embed_fields


@pytest.fixture
def encoder_inputs(model, monkeypatch) -> list[torch.Tensor]:
    """What the model's encoder is given, each call's ``(n, 3, h, w)`` on the 0..255 scale
    (the encoder still runs)."""
    given, encode = [], model._encode

    def recording(pixels: torch.Tensor) -> torch.Tensor:
        given.append(pixels.clone())
        return encode(pixels)

    monkeypatch.setattr(model, "_encode", recording)
    return given


def _session_input(model, path, given: list[torch.Tensor]) -> tuple[Session, torch.Tensor]:
    """A session on `path` (in memory; the scene is one tile), embedded, and what its
    encoder was given."""
    session = Session(path, model)
    before = len(given)
    assert session.embed(progress=False) == 1
    [fed] = given[before:]
    return session, fed


def test_fields_embed_a_georaster_as_a_session_on_its_file_does(model, tmp_path, encoder_inputs):
    folder = write_scene_folder(tmp_path)
    item = LabelledImageFolder(folder)[0]
    [field] = embed_fields(model, [item], progress=False)
    [fed] = encoder_inputs
    session, expected = _session_input(model, folder / "scene.tif", encoder_inputs)
    assert session.signature["normalisation"]["method"] == "percentiles-per-band"
    assert torch.equal(fed, expected)
    stored = np.asarray(session.embedding(0, 0, 0).features[0])  # its store's float16, as float32
    assert np.array_equal(field.features.float().numpy(), stored)
    # The scene is one where it matters: its own pooled range would feed other pixels.
    pooled = prepare_image(item.image, model.image_size)[0]
    assert (pooled - fed).abs().max() > 100


def test_crops_are_cut_from_a_georaster_scaled_as_a_session_scales_it(
    model, tmp_path, encoder_inputs
):
    folder = write_scene_folder(tmp_path)
    [(pixels, labels)] = RealImages(LabelledImageFolder(folder), model.image_size).images
    _, fed = _session_input(model, folder / "scene.tif", encoder_inputs)
    # At the model's input scale the image is the encoder's input, before its padding.
    assert pixels.shape == (*fed.shape[-2:], 3) == (192, 256, 3)
    assert np.array_equal(pixels, fed[0].permute(1, 2, 0).numpy())
    assert labels.shape == pixels.shape[:2] and set(np.unique(labels)) == {0, 1, 2}


@pytest.mark.parametrize(
    "image",
    [
        (np.arange(np.prod(SHAPE)) % 251).astype(np.uint8).reshape(SHAPE),
        (np.arange(np.prod(SHAPE) * 3) % 253).astype(np.uint8).reshape(*SHAPE, 3),
    ],
    ids=["gray-uint8", "rgb-uint8"],
)
def test_uint8_images_are_trained_on_as_before(model, tmp_path, image):
    """A folder's uint8 image (a session's range 0..255) gives the pixels and embeddings the
    same image gives as an array, in its own range, as training used before."""
    tifffile.imwrite(tmp_path / "plain.tif", image)
    tifffile.imwrite(tmp_path / "plain_labels.tif", scene_labels())
    item = LabelledImageFolder(tmp_path)[0]
    assert item.normalisation["method"] == "uint8"
    own = LabelledImage(item.image, item.labels, item.name)  # normalisation None
    [(pixels, labels)] = RealImages([item], model.image_size).images
    [(own_pixels, own_labels)] = RealImages([own], model.image_size).images
    assert np.array_equal(pixels, own_pixels) and np.array_equal(labels, own_labels)
    [field] = embed_fields(model, [item], progress=False)
    [own_field] = embed_fields(model, [own], progress=False)
    assert torch.equal(field.features, own_field.features)
