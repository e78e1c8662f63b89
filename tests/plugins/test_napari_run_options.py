"""How Segment everything and propagation run, from the advanced settings: the mode
(auto: the core's default for the model) and grid points reach `Session.segment_everything`
and its notification; the stop rules reach `tilesam.propagate_mask`, and a walk stopped
next to its seed is shown as a warning, not lost in the worker thread."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager
from tilesam_napari._auto import AUTO
from tilesam_napari._layers import CURRENT

from tilesam.volumes.stop_rules import may_be_off

pytest.importorskip("tilesam.automatic")
pytest.importorskip("tilesam.volumes.propagate")

EARLY = "Propagation stopped within two slices of the seed"


@pytest.fixture
def tiny_widget(widget):
    """The dock widget with the bundled default model, which has an instance head."""
    widget.form.checkpoint.value = None
    return widget


def _wait(qtbot, job):
    assert job is not None and job.running  # in a worker: the call returned at once
    # Not waitSignal(job.worker.finished): a job that fails at once may have emitted it
    # before the wait connects; the job's own slot, connected before it started, hears it.
    qtbot.waitUntil(lambda: not job.running, timeout=120_000)


def _warnings(start: int) -> list[str]:
    records = notification_manager.records[start:]
    return [str(n.message) for n in records if n.severity == NotificationSeverity.WARNING]


def test_the_fields_start_at_the_core_defaults(widget):
    from tilesam.volumes.stop_rules import StopRules

    runs = widget.runs
    assert runs.everything_options() == {"mode": None, "points_per_side": None}
    assert runs.rules() == dataclasses.asdict(StopRules())
    off = {name for name, field in runs.rules_fields.items() if hasattr(field, "off")}
    assert off == {f.name for f in dataclasses.fields(StopRules) if may_be_off(f.name)}
    assert off == {"min_score", "min_score_ratio", "min_contrast"}
    assert runs.rules_fields["min_score"].off.value  # off by default, as in the core
    for mode, grid in (("instance", False), ("prompts", False), ("grid", True), ("auto", True)):
        runs.mode.value = mode
        assert widget.grid_points.enabled is grid  # grid points apply to grid mode only
    runs.set_rules({"min_contrast": None, "max_growth": 3.0})
    assert runs.rules() == dataclasses.asdict(StopRules(min_contrast=None, max_growth=3.0))
    assert not runs.rules_fields["min_contrast"].number.enabled


def test_the_mode_chosen_reaches_the_result_and_the_notification(tiny_widget, qtbot, nuclei, notes):
    viewer = tiny_widget.viewer
    viewer.add_image(nuclei, name="nuclei")
    tiny_widget.runs.mode.value = "grid"
    tiny_widget.grid_points.value = 16
    _wait(qtbot, tiny_widget.segment_everything())
    table = viewer.layers[AUTO].features
    assert len(table) > 10 and set(table["mode"]) == {"grid"}
    assert any("(grid mode) found" in n for n in notes())

    tiny_widget.runs.mode.value = "auto"  # tiny ships an instance head: instance mode
    _wait(qtbot, tiny_widget.segment_everything())
    table = viewer.layers[AUTO].features
    assert len(table) > 40 and set(table["mode"]) == {"instance"}  # 65 nuclei
    assert any("(instance mode, the model's default) found" in n for n in notes())


def test_a_model_without_an_instance_head_says_so(widget, qtbot, nuclei, notes):
    widget.viewer.add_image(nuclei, name="nuclei")  # the random test model has no head
    widget.runs.mode.value = "instance"
    _wait(qtbot, widget.segment_everything())
    assert AUTO not in widget.viewer.layers
    assert any("has no instance head" in n for n in notes())


def test_the_stop_rules_reach_the_walk_and_an_early_stop_is_shown(
    tiny_widget, qtbot, notes, monkeypatch
):
    import tilesam
    from tilesam.samples import load_sample

    image, truth = load_sample("nuclei_volume")
    volume, truth = image[8:22], truth[8:22]  # nucleus 4 runs through all 14 slices
    viewer, ann = tiny_widget.viewer, tiny_widget.annotator
    viewer.add_image(volume, name="vol")
    viewer.dims.set_point(0, 8)
    assert tiny_widget.setup()
    ys, xs = np.nonzero(truth[8] == 4)
    box = (ys.min() - 2, xs.min() - 2, ys.max() + 2, xs.max() + 2)
    given, propagate = [], tilesam.propagate_mask

    def spy(*args, **kwargs):
        given.append(kwargs.get("rules"))
        return propagate(*args, **kwargs)

    monkeypatch.setattr(tilesam, "propagate_mask", spy)

    def walk() -> set[int]:
        ann.segment(box=box, z=8)  # the seed: one slice
        _wait(qtbot, tiny_widget.propagate())
        return set(np.flatnonzero(viewer.layers[CURRENT].data.any(axis=(1, 2))))

    start = len(notification_manager.records)
    default = walk()
    assert len(default) > 6 and not _warnings(start)
    assert any(n.startswith("TileSAM propagation:") for n in notes())  # Stop.describe()

    tiny_widget.runs.rules_fields["min_overlap"].value = 0.95  # nothing follows so closely
    start = len(notification_manager.records)
    assert walk() == {8}
    assert given[-1]["min_overlap"] == 0.95
    said = _warnings(start)
    assert len(said) == 1 and EARLY in said[0] and "min_overlap" in said[0]

    tiny_widget.runs.rules_fields["min_overlap"].value = 0.3
    for name in ("min_score_ratio", "min_contrast"):
        tiny_widget.runs.rules_fields[name].value = None  # their "off" boxes ticked
    further = walk()
    assert given[-1]["min_score_ratio"] is given[-1]["min_contrast"] is None
    assert further > default and further == set(range(14))  # the rules off: to the ends
