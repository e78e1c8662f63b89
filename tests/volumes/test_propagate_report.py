"""A walk says where and why it stopped, and what would take it further (issue #22, item 1);
one progress bar per propagation, not one per slice embedded on the way (item 7)."""

from __future__ import annotations

import tilesam
from tilesam.cli import main
from tilesam.samples import sample_path
from tilesam.volumes.walk import PropagationResult

CT = str(sample_path("ct_volume"))
LIVER = (21, 61, 50)


def test_the_python_result_tells_each_walk_s_stop_and_the_rule_to_change(tmp_path):
    result = tilesam.propagate_mask(
        CT, points=[LIVER], window="soft-tissue", cache=tmp_path / "ct.zarr", details=True
    )
    assert isinstance(result, PropagationResult) and result.labels.shape == (40, 160, 160)
    sides = {stop.step: stop for stop in result.stops}
    assert set(sides) == {-1, 1}  # both directions from the clicked slice
    for stop in result.stops:
        line = stop.describe()
        assert f"stopped after slice {stop.last}" in line or stop.reason == "range"
        if stop.reason != "range":
            assert "to go further" in line and "StopRules." in line


def test_the_cli_prints_the_stops_under_one_progress_bar(tmp_path, capsys):
    args = ["propagate", CT, "--cache", str(tmp_path / "ct.zarr"), "--window", "soft-tissue"]
    out = str(tmp_path / "liver.nii.gz")
    assert main([*args, "--point", ",".join(map(str, LIVER)), "--out", out]) == 0
    captured = capsys.readouterr()
    stops = [line for line in captured.out.splitlines() if line.startswith("  object 1")]
    assert len(stops) == 2 and any("towards lower slices" in s for s in stops)
    # The clicked slice's embedding may have a bar; the walk's slices have none of their own.
    assert captured.err.count("embedding (on demand):   0%") <= 1
    # A stricter rule ends the walk earlier, and says so.
    assert main([*args, "--point", "21,61,50", "--out", out, "--min-score", "0.95"]) == 0
    assert "predicted IoU" in capsys.readouterr().out
