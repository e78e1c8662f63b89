"""Committed objects on disk are never lost (issue 23): a labels store carries its image's
signature, another image's setup is refused with one notification instead of recreating it,
the same image reopens it in a new viewer, and a store of an earlier TileSAM is adopted."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import zarr
from tilesam_napari import _labels, _labels_store
from tilesam_napari._commits import COMMITTED_KEY
from tilesam_napari._layers import COMMITTED

from tilesam.cache.store import EmbeddingStore

SHAPE = (300, 200)
POINTS = [(y, x) for y in (30, 90, 150, 210, 270) for x in (50, 150)]


@pytest.fixture(autouse=True)
def _large(monkeypatch):
    """Images of more than 100 x 100 pixels count as large: committed objects on disk."""
    monkeypatch.setattr(_labels_store, "LARGE_VOXELS", 100 * 100)


def _commit_ten(widget, layer, cache, settings) -> np.ndarray:
    """Set up `layer` with `cache` and commit ten objects; returns the store's labels."""
    ann = widget.annotator
    ann.setup(layer, replace(settings, cache=str(cache)))
    for point in POINTS:
        ann.segment(points=[point])
        ann.commit()
    store = _store(cache)
    assert _labels.is_on_disk(widget.viewer.layers[COMMITTED].data)
    assert store.attrs["next_id"] == 11 and set(np.unique(store[:])) == set(range(11))
    return store[:]


def _store(cache) -> zarr.Array:
    return zarr.open_array(str(cache.with_suffix(".labels.zarr")), mode="r")


def _attributes(cache) -> dict:
    """The labels store's attributes as written on disk."""
    text = (cache.with_suffix(".labels.zarr") / "zarr.json").read_text()
    return json.loads(text)["attributes"]


@pytest.mark.parametrize(
    ("face", "other"),
    [("setup", "another shape"), ("set-up button", "other pixels, same shape")],
)
def test_setup_of_another_image_beside_a_labels_store_loses_nothing(
    widget, textured, settings, notes, qtbot, tmp_path, face, other
):
    viewer, ann = widget.viewer, widget.annotator
    image = textured(SHAPE, np.uint8)
    first = viewer.add_image(image, name="first")
    kept = _commit_ten(widget, first, tmp_path / "nap" / "cache.zarr", settings)
    signed = _attributes(tmp_path / "nap" / "cache.zarr")["tilesam_labels"]
    assert signed["image"] == json.loads(json.dumps(ann.session.signature["image"]))

    # The attack: another image, cache `nap/cache` -> the same `nap/cache.labels.zarr`.
    pixels = textured((300, 250), np.uint8) if other == "another shape" else 255 - image
    second = viewer.add_image(pixels, name="second")
    widget.form.set_settings(replace(settings, cache=str(tmp_path / "nap" / "cache")))
    widget.form.image.value = second
    before = len(notes())
    if face == "setup":
        assert widget.setup() is False
    else:
        job = widget.open_in_background()
        qtbot.waitUntil(lambda: job.finished, timeout=60_000)
    (message,) = notes()[before:]  # one notification, which says what to do
    store = str(tmp_path / "nap" / "cache.labels.zarr")
    assert f"'{store}' holds the committed objects of another image" in message
    assert "Choose another cache path" in message and f"delete '{store}'" in message

    # Nothing lost, nothing changed: the store, its signature, and the working session.
    np.testing.assert_array_equal(_store(tmp_path / "nap" / "cache.zarr")[:], kept)
    attributes = _attributes(tmp_path / "nap" / "cache.zarr")
    assert attributes["next_id"] == 11 and attributes["tilesam_labels"] == signed
    assert ann.image is first and viewer.layers[COMMITTED].data.shape == SHAPE
    ann.segment(points=[(150, 100)])
    assert ann.commit() == 11

    # Another cache path for the second image works, beside the first one's.
    widget.form.set_settings(replace(settings, cache=str(tmp_path / "nap" / "second.zarr")))
    assert widget.setup() is True
    assert not np.asarray(viewer.layers[COMMITTED].data).any()
    assert f"{COMMITTED} (first)" in viewer.layers  # the first image's objects, set aside


def test_committed_objects_survive_a_viewer_restart(
    make_napari_viewer, widget, textured, settings, notes, tmp_path
):
    from tilesam_napari._widget import TileSAMWidget

    cache = tmp_path / "img.zarr"
    image = textured(SHAPE, np.uint8)
    kept = _commit_ten(widget, widget.viewer.add_image(image, name="img"), cache, settings)
    widget.viewer.close()

    viewer = make_napari_viewer()  # a new viewer, the same image from its file: same pixels
    again = TileSAMWidget(viewer)
    layer = viewer.add_image(image.copy(), name="img again")
    before = len(notes())
    again.annotator.setup(layer, replace(settings, cache=str(cache)))
    committed = viewer.layers[COMMITTED].data
    assert _labels.is_on_disk(committed)
    np.testing.assert_array_equal(committed[:], kept)
    assert again.annotator.session.n_done == EmbeddingStore.open(cache, mode="r").n_done
    assert not any("earlier TileSAM" in n or "rolled back" in n for n in notes()[before:])
    again.annotator.segment(points=[(150, 100)])
    assert again.annotator.commit() == 11  # ids go on where the first viewer stopped
    again.annotator.undo()
    np.testing.assert_array_equal(_store(cache)[:], kept)


@pytest.mark.parametrize("next_id", [4, None])
def test_a_labels_store_of_an_earlier_version_is_adopted_not_erased(
    widget, textured, settings, notes, tmp_path, next_id
):
    cache = tmp_path / "img.zarr"
    legacy = zarr.create_array(  # as TileSAM made them before: no signature
        str(tmp_path / "img.labels.zarr"), shape=SHAPE, chunks=SHAPE, dtype=np.uint32
    )
    objects = np.zeros(SHAPE, np.uint32)
    objects[10:40, 10:40], objects[100:150, 20:60], objects[200:210, 150:190] = 1, 2, 3
    legacy[:] = objects
    if next_id is not None:
        legacy.attrs["next_id"] = next_id

    image = textured(SHAPE, np.uint8)
    layer = widget.viewer.add_image(image, name="img")
    widget.form.set_settings(replace(settings, cache=str(cache)))
    widget.form.image.value = layer
    assert widget.setup() is True
    assert any("earlier TileSAM" in n and "kept" in n for n in notes())
    np.testing.assert_array_equal(widget.viewer.layers[COMMITTED].data[:], objects)
    attributes = _attributes(cache)
    assert attributes["tilesam_labels"]["image"]["shape"] == list(SHAPE)
    assert attributes["next_id"] == 4  # above every object, even without a next_id before
    widget.annotator.segment(points=[(270, 50)])
    assert widget.annotator.commit() == 4
    now = _store(cache)[:]
    assert now.max() == 4 and (now[objects > 0] == objects[objects > 0]).all()

    # Adopted, it is this image's: another image (its own cache, the same labels path)
    # is refused from now on.
    other = widget.viewer.add_image(255 - image, name="other")
    widget.form.set_settings(replace(settings, cache=str(tmp_path / "img")))
    widget.form.image.value = other
    assert widget.setup() is False
    assert "holds the committed objects of another image" in notes()[-1]


def test_an_earlier_store_of_another_shape_is_refused_and_kept(
    widget, textured, settings, notes, tmp_path
):
    legacy = zarr.create_array(str(tmp_path / "img.labels.zarr"), shape=(50, 400), dtype=np.uint32)
    legacy[5:9, 5:9] = 1
    widget.viewer.add_image(textured(SHAPE, np.uint8), name="img")
    widget.form.set_settings(replace(settings, cache=str(tmp_path / "img.zarr")))
    assert widget.setup() is False
    assert "50x400 pixels there, 300x200 here" in notes()[-1]
    kept = zarr.open_array(str(tmp_path / "img.labels.zarr"), mode="r")
    assert kept[:].sum() == 16 and "tilesam_labels" not in kept.attrs


def test_a_folder_that_is_no_labels_store_is_refused_and_kept(
    widget, textured, settings, notes, tmp_path
):
    (tmp_path / "img.labels.zarr").mkdir()
    (tmp_path / "img.labels.zarr" / "notes.txt").write_text("mine")
    widget.viewer.add_image(textured(SHAPE, np.uint8), name="img")
    widget.form.set_settings(replace(settings, cache=str(tmp_path / "img.zarr")))
    assert widget.setup() is False
    assert "is not a TileSAM labels store" in notes()[-1]
    assert (tmp_path / "img.labels.zarr" / "notes.txt").read_text() == "mine"


def test_objects_of_another_image_of_the_same_shape_are_set_aside_in_memory(
    widget, textured, settings, monkeypatch
):
    monkeypatch.setattr(_labels_store, "LARGE_VOXELS", 10**9)  # in memory
    viewer, ann = widget.viewer, widget.annotator
    image = textured(SHAPE, np.uint8)
    ann.setup(viewer.add_image(image, name="first"), settings)
    ann.segment(points=[(150, 100)])
    assert ann.commit() == 1
    first = viewer.layers[COMMITTED]
    ann.setup(viewer.add_image(255 - image, name="second"), settings)
    assert viewer.layers[COMMITTED] is not first and not viewer.layers[COMMITTED].data.any()
    assert first.name == f"{COMMITTED} (first)" and first.data.max() == 1
    assert viewer.layers[COMMITTED].metadata[COMMITTED_KEY]["layer"] == "second"
    # The same image set up again (other settings) keeps its layer.
    ann.setup("second", replace(settings, tile_size=128))
    assert viewer.layers[COMMITTED].metadata[COMMITTED_KEY]["layer"] == "second"
