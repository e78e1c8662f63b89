"""`segment` on a volume takes (z, y, x) prompts, never guesses the slice, and writes the
volume formats with the source's geometry (issue #22, item 6)."""

from __future__ import annotations

import numpy as np
import pytest

import tilesam
from tilesam.cli import main
from tilesam.errors import TileSAMError
from tilesam.io import open_image
from tilesam.samples import load_sample, sample_path

CT = str(sample_path("ct_volume"))


def test_the_cli_segments_a_slice_of_a_volume_into_a_labels_volume(tmp_path, capsys):
    out = tmp_path / "liver.nii.gz"
    assert main(["segment", CT, "--point", "21,61,50", "--window", "soft-tissue", "--out",
                 str(out)]) == 0  # fmt: skip
    assert "on slice 21" in capsys.readouterr().out
    with open_image(out) as written, open_image(CT) as ct:
        labels = written.read()
        assert written.spacing == ct.spacing and written.origin == ct.origin
    assert labels.shape == (40, 160, 160) and labels[21].any() and not labels[:21].any()
    liver = load_sample("ct_volume")[1][21] == 1
    assert (labels[21] > 0)[liver].mean() > 0.5
    assert main(["segment", CT, "--point", "61,50", "--out", str(tmp_path / "m.tif")]) == 2
    assert "z,y,x" in capsys.readouterr().err


def test_a_session_on_a_volume_takes_zyx_points_and_refuses_to_guess_the_slice():
    session = tilesam.Session(CT, window="soft-tissue")
    by_point = session.segment(points=[(21, 61, 50)])
    assert by_point.z == 21
    assert np.array_equal(by_point.mask, session.segment(points=[(61, 50)], z=21).mask)
    assert session.segment(box=(21, 30, 20, 95, 90)).z == 21
    with pytest.raises(TileSAMError, match="is a volume of 40 slices: give z="):
        session.segment(points=[(61, 50)])
    with pytest.raises(TileSAMError, match=r"on slices \[20.0, 21.0\]"):
        session.segment(points=[(20, 61, 50), (21, 61, 50)])
