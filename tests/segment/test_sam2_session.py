"""Sessions with a SAM 2.1 model: tiles embedded with their high-resolution features into a
cache, reopened, clicked and boxed across tile borders, on dask workers and from the
command line.

The fixture checkpoint (``tests/data/fixtures/sam2_small_fp16.pt``) has random weights:
these tests assert behaviour (what is stored, what comes back, what agrees with what),
not mask quality.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import distributed
import numpy as np
import pytest
import tifffile
import torch

from tilesam.cache.canvas import canvas_input_size
from tilesam.cache.distributed import recipe_from_model
from tilesam.cache.store import EmbeddingStore
from tilesam.cli import main
from tilesam.decode.prompt import Prompt
from tilesam.errors import TileSAMError
from tilesam.models.loading import load_model
from tilesam.models.preprocess import normalize_intensity
from tilesam.models.sam2_model import Sam2Embedding, Sam2Model
from tilesam.segment.session import Session

CHECKPOINT = Path(__file__).parents[1] / "data" / "fixtures" / "sam2_small_fp16.pt"
TILING = {"tile_size": 512, "halo": 32}  # a 2 x 2 grid over 800 x 700: three edge tiles
POINT = (450, 380)  # inside the bright square, which crosses every tile border
BOX = (250, 200, 650, 550)  # fits in no tile: answered in each it overlaps


@pytest.fixture(scope="module")
def model() -> Sam2Model:
    torch.set_num_threads(1)
    return load_model(checkpoint=CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, (800, 700)).clip(0, 255).astype(np.uint8)
    img[300:600, 250:500] = 200
    return img


@pytest.fixture(scope="module")
def cache(model, image, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sam2") / "c.zarr"
    assert Session(image, model, path, **TILING).embed(progress=False) == 4
    return path


@pytest.fixture(scope="module")
def in_memory(model, image) -> Session:
    session = Session(image, model, **TILING)
    session.embed(progress=False)
    return session


def test_the_cache_keeps_each_tile_with_its_high_res_features(model, cache) -> None:
    store = EmbeddingStore.open(cache, mode="r")
    assert store.format_version == 3 and store.high_res_shapes == model.card.high_res_shapes
    assert store.signature["model"]["resize"] == "square"
    assert store.signature["tiling"]["canvas"] == "tile"
    assert store.verify().ok
    assert store.read_decoder() is None  # the NumPy decoder does not run SAM 2


def test_features_round_trip_bit_exact_after_float16(model, image, cache, in_memory) -> None:
    """The reopened cache gives back each tile's maps exactly as float16 made them: the
    in-memory session's (stored float16 too), and the model's own on the full tile."""
    reopened = Session(image, model, cache)
    for tile in [(0, 0, 0), (0, 1, 1)]:
        got, want = reopened.embedding(*tile), in_memory.embedding(*tile)
        assert isinstance(got, Sam2Embedding)
        assert (got.original_size, got.input_size) == (want.original_size, want.input_size)
        for a, b in zip(
            (got.features, *got.high_res_features), (want.features, *want.high_res_features)
        ):
            assert a.dtype == np.float32 and np.array_equal(a, b)
    own = model.embed(image[:512, :512], intensity=reopened.intensity)
    got = reopened.embedding(0, 0, 0)
    assert got.input_size == (1024, 1024)
    for a, b in zip(got.high_res_features, own.high_res_features):
        assert np.array_equal(a, b.numpy().astype(np.float16).astype(np.float32))


def test_edge_tiles_are_padded_to_the_full_tile(model, image, in_memory) -> None:
    """An edge tile is embedded on the full tile's canvas (one magnification for every
    tile), and its masks agree with the model's own on that canvas, cut to the tile."""
    emb = in_memory.embedding(0, 1, 1)
    shape = in_memory.grid.tile_shape(1, 1)
    assert emb.original_size == shape == (352, 252)
    assert emb.input_size == canvas_input_size(shape, (512, 512), 1024) == (704, 504)
    (y0, y1), (x0, x1) = ((s.start, s.stop) for s in in_memory.grid.tile_region(1, 1))
    canvas = np.zeros((512, 512), np.float32)
    canvas[: y1 - y0, : x1 - x0] = normalize_intensity(image[y0:y1, x0:x1], in_memory.intensity)
    own = model.embed(canvas, intensity=(0.0, 255.0))
    point = [(550 - y0, 470 - x0)]  # in the bright square
    # The decoder's masks as they are: kept parts are connected through the padding too.
    theirs = model.predict(own, points=point, keep_prompted=False).mask()[: y1 - y0, : x1 - x0]
    prompt = Prompt.make(point, shape=shape)
    ours = in_memory.predictor.predict_prompt(emb, prompt, keep_prompted=False).mask()
    assert ours.shape == theirs.shape and ours.any()
    assert (ours == theirs).mean() > 0.999


def test_cached_mask_equals_the_models_own_predict_on_a_full_tile(model, image, cache) -> None:
    session = Session(image, model, cache)
    own = model.embed(image[:512, :512], intensity=session.intensity)
    prompt = Prompt.make([(400, 400)], shape=(512, 512))
    theirs = model.predict_prompt(own, prompt)
    ours = session.predictor.predict_prompt(session.embedding(0, 0, 0), prompt)
    assert np.abs(ours.scores - theirs.scores).max() < 1e-2
    assert (ours.mask() == theirs.mask()).mean() > 0.995


def test_reopened_cache_gives_the_in_memory_masks_across_tile_borders(
    model, image, cache, in_memory
) -> None:
    reopened = Session(image, model, cache)
    assert reopened.grid.tile_size == 512 and reopened.n_done == 4
    for prompt in ({"points": [POINT]}, {"box": BOX}):
        disk, memory = reopened.segment(**prompt), in_memory.segment(**prompt)
        assert np.array_equal(disk.mask, memory.mask) and disk.score == memory.score
    boxed = reopened.segment(box=BOX)
    assert len({t.tile for t in boxed.tiles}) == 4  # every tile the box overlaps
    assert boxed.mask[BOX[0] : BOX[2], BOX[1] : BOX[3]].any()
    assert not boxed.mask[: BOX[0]].any() and not boxed.mask[:, BOX[3] :].any()


def test_a_cache_of_the_other_family_is_refused(model, image, cache, tmp_path) -> None:
    with pytest.raises(TileSAMError, match="made by a SAM 2.1 model.*SAM 1 model"):
        Session(image, "tiny", cache)
    sam1 = tmp_path / "sam1.zarr"
    Session(image, "tiny", sam1, **TILING)
    with pytest.raises(TileSAMError, match="made by a SAM 1 model.*SAM 2.1 model"):
        Session(image, model, sam1)


def test_volume_slices_at_a_slice_scale(model) -> None:
    """The slice-scale path carries the high-resolution features too."""
    volume = np.random.default_rng(1).integers(0, 1000, (2, 64, 48)).astype(np.uint16)
    volume[:, 20:40, 10:30] += 2000
    session = Session(volume, model, slice_scale=2)
    emb = session.embedding(1, 0, 0)
    assert isinstance(emb, Sam2Embedding) and emb.input_size == (128, 96)
    assert session.segment(points=[(1, 30, 20)]).mask.shape == (2, 64, 48)[1:]


def test_dask_workers_rebuild_a_sam2_model(model, image, cache, tmp_path) -> None:
    recipe = recipe_from_model(model, tmp_path)
    assert isinstance(recipe.build(), Sam2Model)
    session = Session(image, model, tmp_path / "dask.zarr", **TILING)
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as client:
        assert session.embed(progress=False, batch_size=1, scheduler=client) == 4
    a, b = EmbeddingStore.open(cache, mode="r"), EmbeddingStore.open(tmp_path / "dask.zarr")
    for tile in a.done_tiles():
        assert np.array_equal(a.read_tile(*tile), b.read_tile(*tile))
        for x, y in zip(a.read_high_res(*tile), b.read_high_res(*tile)):
            assert np.array_equal(x, y)


def test_command_line_segment_with_a_sam2_checkpoint(image, cache, tmp_path, capsys) -> None:
    tifffile.imwrite(tmp_path / "image.tif", image)
    shutil.copy(CHECKPOINT, tmp_path / "sam2_small.pt")
    out = tmp_path / "mask.tif"
    argv = ["segment", str(tmp_path / "image.tif"), "--checkpoint", str(tmp_path / "sam2_small.pt")]
    argv += ["--cache", str(tmp_path / "c.zarr"), "--tile", "512", "--halo", "32"]
    assert main([*argv, "--box", ",".join(map(str, BOX)), "--out", str(out)]) == 0
    assert "mask:" in capsys.readouterr().out
    mask = tifffile.imread(out) > 0
    assert mask.shape == image.shape and mask[BOX[0] : BOX[2], BOX[1] : BOX[3]].any()
    assert EmbeddingStore.open(tmp_path / "c.zarr", mode="r").format_version == 3
