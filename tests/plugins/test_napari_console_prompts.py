"""Prompts given from the napari console appear in the prompt layers (issue #22, item 10):
``annotator.segment(points=..., labels=..., box=...)`` shows what was segmented, at the
image pixels given, through the image layer's scale and translate."""

from __future__ import annotations

import numpy as np
from tilesam_napari import _keys
from tilesam_napari._layers import BOXES, CURRENT, POINTS

POINTS_YX, LABELS, BOX = [(120, 80), (30, 30)], [1, 0], (100, 60, 140, 100)


def _world(image, coords):
    return np.array([image.data_to_world(c) for c in coords])


def test_console_points_and_box_are_drawn_where_they_segmented(widget, nuclei, settings, wait_idle):
    viewer, ann = widget.viewer, widget.annotator
    image = viewer.add_image(nuclei, name="img", scale=(0.5, 2.0), translate=(10, -4))
    ann.setup(image, settings)
    points, boxes = viewer.layers[POINTS], viewer.layers[BOXES]
    points.scale, points.translate = (1, 1), (0, 0)  # a prompt layer the user moved

    result = ann.segment(points=POINTS_YX, labels=LABELS, box=BOX)
    assert not ann.busy  # drawn without a second, live segmentation
    np.testing.assert_allclose(_world(points, points.data), _world(image, POINTS_YX))
    assert points.features["label"].tolist() == [True, False]
    np.testing.assert_allclose(points.face_color, [[0, 1, 0, 1], [1, 0, 0, 1]])  # lime, red
    (rectangle,) = boxes.data
    assert boxes.shape_type == ["rectangle"]
    corners = [(100, 60), (100, 100), (140, 100), (140, 60)]
    np.testing.assert_allclose(_world(boxes, rectangle), _world(image, corners))
    # The layers hold the prompt that was segmented: read back, it gives the same mask.
    prompt = ann.prompt()
    np.testing.assert_allclose(prompt.points, POINTS_YX)
    assert prompt.labels.tolist() == LABELS and prompt.box == BOX
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, result.mask)

    points.add([points.world_to_data(image.data_to_world((60, 200)))])  # a click adds to it
    wait_idle(ann)
    np.testing.assert_allclose(ann.prompt().points, [*POINTS_YX, (60, 200)])
    expected = ann.session.segment(points=[*POINTS_YX, (60, 200)], labels=[1, 0, 1], box=BOX)
    np.testing.assert_array_equal(viewer.layers[CURRENT].data > 0, expected.mask)

    np.testing.assert_allclose(points.face_color[2], [0, 1, 0, 1])  # a positive click

    assert _keys.toggle_label(ann) == 0  # the next click negative: the console keeps that
    ann.segment(points=[(50, 50)])  # a new prompt from the console replaces it
    np.testing.assert_allclose(_world(points, points.data), _world(image, [(50, 50)]))
    assert points.features["label"].tolist() == [True] and len(boxes.data) == 0
    assert not points.feature_defaults["label"][0]


def test_on_a_volume_the_slice_s_prompts_are_replaced_and_shown(widget, textured, settings):
    viewer, ann = widget.viewer, widget.annotator
    viewer.add_image(textured((5, 96, 96), np.uint8), name="vol", scale=(3.0, 1.0, 1.0))
    viewer.dims.set_point(0, 2 * 3.0)  # slice 2 on screen
    ann.setup("vol", settings)
    points, boxes = viewer.layers[POINTS], viewer.layers[BOXES]

    ann.segment(points=[(50, 40)])  # on the slice shown
    ann.segment(box=(10, 10, 40, 50), z=4)  # on another slice: the viewer goes there
    assert viewer.layers[CURRENT].data[4].any()
    np.testing.assert_allclose(points.data, [[2, 50, 40]])  # slice 2's point stays
    (rectangle,) = boxes.data
    np.testing.assert_allclose(rectangle, [[4, 10, 10], [4, 10, 50], [4, 40, 50], [4, 40, 10]])
    assert ann.prompt(4).box == (10, 10, 40, 50) and len(ann.prompt(4).points) == 0
    assert round(viewer.dims.point[0] / 3.0) == 4  # slice 4 is on screen

    ann.segment(points=[(20, 20), (70, 70)], labels=[1, 0], z=2)
    np.testing.assert_allclose(points.data, [[2, 20, 20], [2, 70, 70]])
    assert points.features["label"].tolist() == [True, False]
    assert len(boxes.data) == 1  # slice 4's box stays
