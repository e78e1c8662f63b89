"""Grid mode end to end with the bundled `tiny`: objects on every tile border and corner
come back once and whole, with unique ids; empty images, cancel, progress, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tilesam
from tilesam.automatic import AutoSettings, segment_everything
from tilesam.errors import Cancelled, TileSAMError
from tilesam.evaluate.instances import score_instances

# Grid mode, one point every 21 pixels of these 256-pixel tiles.
FAST = {"mode": "grid", "points_per_side": 12}


@pytest.fixture(scope="module")
def session(discs, tiny):
    tile, halo = discs[2].tile_size, discs[2].halo
    s = tilesam.Session(discs[0], tiny, tile_size=tile, halo=halo)
    s.embed(progress=False)
    return s


@pytest.mark.parametrize("borders", ["merge", "follow"])
def test_objects_on_every_border_and_corner_come_back_once_and_whole(
    session, discs, defects, borders
) -> None:
    _, truth, grid = discs
    result = session.segment_everything(borders=borders, **FAST)
    labels = result.labels
    assert labels.dtype == np.uint32 and labels.shape == truth.shape
    assert sorted(np.unique(labels[labels > 0])) == list(range(1, result.n_objects + 1))
    assert defects(labels, truth) == (0, 0)
    assert score_instances(labels, truth).f1 >= 0.9
    # The 16 discs on borders and corners crossed tile edges: each was joined from its pieces.
    assert result.stats["border_objects"] >= 16
    assert result.stats["tiles"] == grid.n_tiles


def test_the_function_and_the_session_method_agree(session) -> None:
    a = segment_everything(session, **FAST)
    b = session.segment_everything(**FAST)
    assert np.array_equal(a.labels, b.labels)
    table = a.table
    assert len(table) == a.n_objects and list(table["id"]) == list(range(1, a.n_objects + 1))
    assert (table["mode"] == "grid").all() and (table["area"] > 0).all()


def test_progress_hears_embedding_then_every_tile_and_cancel_stops(tiny, discs, tiling) -> None:
    image = discs[0][:480, :480]  # 2 x 2 tiles
    heard = []
    s = tilesam.Session(image, tiny, tile_size=tiling[0], halo=tiling[1])
    s.segment_everything(callback=lambda done, total: heard.append((done, total)), **FAST)
    assert heard[-1] == (4, 4) and (4, 4) in heard[:-1]  # 4 tiles embedded, then 4 decoded
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="cancelled"):
        s.segment_everything(cancel=stop, **FAST)


def test_an_image_without_objects_gives_empty_labels_and_table(tiny) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(30, 2, (300, 300)).clip(0, 255).astype(np.uint8)
    result = segment_everything(image, tiny, **FAST)
    assert result.n_objects == 0 and not result.labels.any()
    assert len(result.table) == 0 and "area" in result.table.columns


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_score": 1.5}, "min_score must be a number from 0 to 1"),
        ({"points_per_side": 0}, "points_per_side must be a whole number >= 1"),
        ({"min_size": -1}, "min_size must be a whole number >= 0"),
        ({"nms": 0.3}, "Unknown segment-everything option"),
        ({"borders": "glue"}, "borders must be 'merge' or 'follow'"),
        ({"instance_head": 3}, "instance_head must be a file path"),
        ({"mode": "instance", "instance_head": "none.pt"}, "Instance head none.pt does not"),
        ({"mode": "magic"}, "Unknown mode 'magic'"),
        ({"z": 3}, "Slice z=3 does not exist"),
    ],
)
def test_bad_input_is_refused_before_any_work(tiny, options, message) -> None:
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    session = tilesam.Session(image, tiny)
    with pytest.raises(TileSAMError, match=message):
        session.segment_everything(**options)
    assert session.n_done == 0  # nothing was embedded


def test_settings_hold_their_documented_defaults() -> None:
    s = AutoSettings()
    assert (s.points_per_side, s.min_score, s.min_stability, s.nms_iou) == (32, 0.5, 0.7, 0.2)
    assert (s.min_size, s.max_hole, s.borders) == (25, 25, "merge")
