"""One prompt type with one validator: every face refuses a bad prompt with the same words."""

from __future__ import annotations

import numpy as np
import pytest

import tilesam
from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError
from tilesam.samples import load_sample

BAD = [
    ({"points": [(300, 10)]}, "Point (300.0, 10.0) lies outside the image of shape (256, 256)"),
    ({"points": [(10, 10)], "labels": [2]}, "labels must hold one 1 (positive) or 0"),
    ({"box": (50, 60, 50, 90)}, "box [50.0, 60.0, 50.0, 90.0] is empty"),
    ({"box": (300, 0, 330, 50)}, "lies outside the image of shape (256, 256)"),
    ({"labels": [1]}, "labels were given without points"),
    ({"box": (1, 2, 3)}, "box must be (y0, x0, y1, x1)"),
    ({"points": [("a", "b")]}, "points must be (y, x) pairs"),
]


@pytest.fixture(scope="module")
def faces():
    """The same 256 x 256 image behind the model, a session and the validator itself."""
    image = load_sample("nuclei")[0]
    model = tilesam.load_model()
    embedding = model.embed(image)
    session = tilesam.Session(image, model)
    return {
        "Prompt.make": lambda **p: Prompt.make(shape=image.shape, **p),
        "SamModel.predict": lambda **p: model.predict(embedding, **p),
        "Session.segment": lambda **p: session.segment(**p),
    }


@pytest.mark.parametrize(("prompt", "message"), BAD, ids=[m[:24] for _, m in BAD])
def test_every_face_refuses_a_bad_prompt_with_the_same_message(faces, prompt, message):
    said = set()
    for face in faces.values():
        with pytest.raises(TileSAMError) as err:
            face(**prompt)
        assert message in str(err.value)
        said.add(str(err.value))
    assert len(said) == 1  # one validator, one message


def test_a_session_takes_a_checked_prompt_and_checks_it_against_its_image():
    image = load_sample("nuclei")[0]
    session = tilesam.Session(image)
    y, x = np.argwhere(load_sample("nuclei")[1] == 1).mean(axis=0)
    prompt = Prompt.make([(y, x)])
    assert session.segment(prompt).area == session.segment(points=[(y, x)]).area > 0
    with pytest.raises(TileSAMError, match="outside the image"):
        session.segment(Prompt.make([(400, 10)]))  # checked again: another image's prompt


def test_negative_points_alone_name_no_object_for_a_session_but_are_a_prompt_for_sam():
    image = load_sample("nuclei")[0]
    with pytest.raises(TileSAMError, match="needs a positive point or a box"):
        tilesam.Session(image).segment(points=[(10, 10)], labels=[0])
    model = tilesam.load_model()
    assert model.predict(model.embed(image), points=[(10, 10)], labels=[0]).scores.shape == (3,)
