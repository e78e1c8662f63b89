"""A cache opens the same from every face: made by the command line with a halo and a CT
window of its own, it is reopened by Python and by a real napari viewer without those
options, and used as it is (no tile embedded again, no model loaded to answer a click)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from tilesam.cache.store import EmbeddingStore
from tilesam.cli import main
from tilesam.decode.numpy_predictor import NumpyPredictor
from tilesam.samples import load_sample
from tilesam.segment.session import Session

HALO, TILE = 24, 128  # neither is a default


def _ct(tmp_path):
    """Four slices of the sample CT (Hounsfield units) through its liver, as NIfTI."""
    volume, organs = load_sample("ct_volume")
    image = sitk.GetImageFromArray(volume[18:22])
    image.SetSpacing((0.9, 0.9, 2.5))
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(image, str(path))
    return path, organs[18:22]


def _tiles_written(cache) -> dict[str, int]:
    """Each stored embedding chunk's modification time: a tile embedded again changes it."""
    chunks = (cache / "embeddings").rglob("*")
    return {str(p): p.stat().st_mtime_ns for p in chunks if p.is_file()}


def test_a_cli_cache_opens_with_its_own_settings_in_python_and_napari(widget, tmp_path):
    path, organs = _ct(tmp_path)
    cache = tmp_path / "ct.zarr"
    args = ["embed", str(path), "--cache", str(cache), "--tile", str(TILE), "--halo", str(HALO)]
    assert main([*args, "--window", "soft-tissue"]) == 0
    made = EmbeddingStore.open(cache, mode="r")
    assert made.missing_tiles() == [] and made.signature["normalisation"]["window"] == "soft-tissue"
    written = _tiles_written(cache)

    # Python: no tile size, halo, window or model given.
    session = Session(path, cache=cache)
    assert (session.grid.tile_size, session.grid.halo) == (TILE, HALO)
    assert session.signature == made.signature and session.missing_tiles() == []
    assert isinstance(session.predictor, NumpyPredictor)  # the cache's decoder: no model
    y, x = np.argwhere(organs[2] == 1).mean(axis=0)  # a click on the liver
    assert session.segment(points=[(y, x)], z=2).area > 0

    # napari: the file opened with the plugin's reader, the widget's settings left on auto.
    widget.viewer.open(str(path), plugin="tilesam")
    widget.form.checkpoint.value = None
    widget.form.cache.value = cache
    assert widget.setup() is True
    opened = widget.annotator.session
    assert (opened.grid.tile_size, opened.grid.halo) == (TILE, HALO)
    assert opened.signature["normalisation"] == made.signature["normalisation"]
    assert opened.n_done == opened.n_tiles
    assert widget.annotator.segment(points=[(y, x)], z=2).area > 0
    assert _tiles_written(cache) == written  # nothing was embedded again
