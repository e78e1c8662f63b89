"""``tilesam propagate``'s stop-rule options: one per threshold, defaults in the help,
values out of range refused before any work (issue #24)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

from tilesam.cli import build_parser, main
from tilesam.cli.propagate import _rules
from tilesam.volumes.stop_rules import StopRules

OPTIONS = ("--min-area", "--min-score", "--min-score-ratio", "--min-overlap", "--max-growth",
           "--min-contrast")  # fmt: skip


def test_every_rule_is_an_option_with_its_default_in_the_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["propagate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in OPTIONS:
        assert option in text
    assert "(default off; 0 turns it off)" in text and "(default 0.8; 0 turns it off)" in text


def _parse(*extra: str):
    return build_parser("propagate").parse_args(
        ["propagate", "v.tif", "--cache", "c.zarr", "--out", "o.tif", *extra]
    )


def test_options_become_the_rules() -> None:
    assert _rules(_parse()) == StopRules()
    given = "--min-score 0.3 --min-score-ratio 0 --max-growth 4 --min-overlap 0.1 --min-area 20"
    rules = _rules(_parse(*given.split(), "--min-contrast", "0"))
    assert rules == StopRules(min_area=20, min_score=0.3, min_score_ratio=None,
                              min_overlap=0.1, max_growth=4.0, min_contrast=None)  # fmt: skip
    assert _rules(_parse("--no-fade-rule")).min_contrast is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [("--min-score-ratio 1.5", r"StopRules.min_score_ratio \(--min-score-ratio\) must be a "
      r"number above 0 and at most 1"),
     ("--max-growth 0.5", r"StopRules.max_growth \(--max-growth\) must be a number at least 1"),
     ("--min-overlap -1", r"--min-overlap\) must be")],
)  # fmt: skip
def test_a_threshold_out_of_range_is_refused_before_any_work(tmp_path, capsys, extra, message):
    volume = tmp_path / "v.tif"
    tifffile.imwrite(volume, np.zeros((3, 16, 16), np.uint8))
    out = tmp_path / "labels.tif"
    argv = ["propagate", str(volume), "--cache", str(tmp_path / "c.zarr"), "--point", "1,8,8",
            "--out", str(out), *extra.split()]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tilesam: error: StopRules.") and re.search(message, err)
    assert not out.exists() and not (tmp_path / "c.zarr").exists()  # nothing embedded
