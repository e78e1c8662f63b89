"""Quantised embeddings (store format 4, :mod:`tilesam.cache.codec`): within their error
bound, the same masks as float16 on the official fixtures and on real nuclei, older
stores still read, damage still found."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import tilesam
from tilesam.cache.codec import dequantise, error_bound, quantise
from tilesam.cache.store import EmbeddingStore
from tilesam.errors import TileSAMError

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
SAMPLES = Path(__file__).parents[2] / "sample_data"
META = {"tile_shape": (300, 420), "input_shape": (731, 1024)}
SIG = {"model": "test"}
MIN_AGREEMENT = 0.995
SCORE_TOLERANCE = 0.02


def _store(path: Path, emb_shape: tuple[int, ...], encoding: str = "q8") -> EmbeddingStore:
    return EmbeddingStore.create(
        path, signature=SIG, grid_shape=(1, 1, 2), embedding_shape=emb_shape, encoding=encoding
    )


def _round_trip(tmp_path: Path, x: np.ndarray) -> np.ndarray:
    store = _store(tmp_path / "q8.zarr", x.shape)
    store.write_tile(0, 0, 0, x, META)
    return EmbeddingStore.open(tmp_path / "q8.zarr", mode="r").read_tile(0, 0, 0)


def test_round_trip_within_the_bound(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(16, 8, 8)) * rng.uniform(0.01, 30, (16, 1, 1))).astype(np.float32)
    x[3] = 2.5  # a constant channel comes back exactly
    got = _round_trip(tmp_path, x)
    assert got.dtype == np.float32
    bound = error_bound(quantise(x)[1])[:, None, None]
    assert (np.abs(got - x) <= bound).all()
    assert np.array_equal(got[3], x[3])
    codes, scale = quantise(x)
    np.testing.assert_array_equal(dequantise(codes, scale), got)


@functools.cache
def _fixture(name: str) -> tuple[tilesam.SamModel, dict[str, np.ndarray], dict]:
    model = tilesam.load_model(checkpoint=FIXTURES / f"{name}_fp16.pth", device="cpu")
    with np.load(FIXTURES / f"{name}_reference.npz") as npz:
        ref = dict(npz)
    return model, ref, json.loads((FIXTURES / f"{name}_prompts.json").read_text())


def _embedding(x: np.ndarray, sizes: tuple) -> tilesam.ImageEmbedding:
    features = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    return tilesam.ImageEmbedding(features, *sizes)


def _agree(model, base, cand, prompts: list[dict]) -> tuple[float, float]:
    """The worst mask agreement and the largest score difference over `prompts`."""
    worst, dscore = 1.0, 0.0
    for kw in prompts:
        a, b = model.predict(base, **kw), model.predict(cand, **kw)
        worst = min(worst, float((a.masks == b.masks).mean()))
        dscore = max(dscore, float(np.abs(a.scores - b.scores).max()))
    return worst, dscore


def _fixture_prompts(prompts: dict) -> list[dict]:
    out = []
    for p in prompts.values():
        if p.get("mask_input"):
            continue  # fed back from an earlier result: the same decoder, not the cache
        kw: dict = {"multimask": p["multimask_output"], "keep_prompted": False}
        if p["point_coords"] is not None:
            kw["points"] = np.asarray(p["point_coords"], dtype=np.float64)[:, ::-1]
            kw["labels"] = p["point_labels"]
        if p["box"] is not None:
            x0, y0, x1, y1 = p["box"]
            kw["box"] = (y0, x0, y1, x1)
        out.append(kw)
    return out


@pytest.mark.parametrize("name", ["sam1_small", "vit_t_small"])
def test_fixture_masks_unchanged(tmp_path: Path, name: str) -> None:
    model, ref, prompts = _fixture(name)
    sizes = (tuple(int(v) for v in ref["original_size"]), tuple(int(v) for v in ref["input_size"]))
    x = ref["embedding"]
    base = _embedding(x.astype(np.float16), sizes)  # what a float16 store gives
    worst, dscore = _agree(model, base, _embedding(_round_trip(tmp_path, x), sizes),
                           _fixture_prompts(prompts))  # fmt: skip
    assert worst >= MIN_AGREEMENT and dscore <= SCORE_TOLERANCE


def test_real_nuclei_masks_unchanged(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    image = tifffile.imread(SAMPLES / "nuclei_heldout.tif")
    labels = tifffile.imread(SAMPLES / "nuclei_heldout_labels.tif")
    model = tilesam.load_model("tiny", device="cpu")
    emb = model.embed(image)
    x = emb.features[0].numpy()
    sizes = (emb.original_size, emb.input_size)
    prompts = []
    for label in range(1, 126, 12):  # 11 of the 125 nuclei: a click and a box each
        ys, xs = np.nonzero(labels == label)
        mid = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        prompts.append({"points": np.array([[ys[mid], xs[mid]]], float), "labels": [1]})
        prompts.append({"box": (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)})
    for kw in prompts:
        kw["multimask"] = False
    base = _embedding(x.astype(np.float16), sizes)
    worst, dscore = _agree(model, base, _embedding(_round_trip(tmp_path, x), sizes), prompts)
    assert worst >= MIN_AGREEMENT and dscore <= SCORE_TOLERANCE


def test_float16_stores_still_open_beside_q8(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(8, 4, 4)).astype(np.float32)
    old = _store(tmp_path / "old.zarr", x.shape, encoding="float16")
    old.write_tile(0, 0, 1, x, META)
    reopened = EmbeddingStore.open(tmp_path / "old.zarr", mode="r")
    assert reopened.format_version == 2 and reopened.encoding == "float16"
    np.testing.assert_array_equal(reopened.read_tile(0, 0, 1), x.astype(np.float16))
    new = _store(tmp_path / "new.zarr", x.shape)
    new.write_tile(0, 0, 1, x, META)
    info = EmbeddingStore.open(tmp_path / "new.zarr", mode="r").info()
    assert (info["format_version"], info["embedding_encoding"]) == (4, "q8")
    assert zarr.open_array(tmp_path / "new.zarr" / "embeddings").dtype == np.uint8


def _damaged(tmp_path: Path, what: str) -> EmbeddingStore:
    x = np.random.default_rng(2).normal(size=(8, 16, 16)).astype(np.float32)
    store = _store(tmp_path / "c.zarr", x.shape)
    store.write_tile(0, 0, 0, x, META)
    store.write_tile(0, 0, 1, x[::-1].copy(), META)  # other codes
    root = tmp_path / "c.zarr"
    codes = root / "embeddings" / "c" / "0" / "0" / "0" / "0" / "0" / "0"
    scale = root / "embedding_scale" / "c" / "0" / "0" / "0" / "0" / "0"
    if what == "scale":
        data = bytearray(scale.read_bytes())
        data[5] ^= 0x40
        scale.write_bytes(bytes(data))
    elif what == "copied":
        other = root / "embeddings" / "c" / "0" / "0" / "1" / "0" / "0" / "0"
        codes.write_bytes(other.read_bytes())
    elif what == "missing":
        codes.unlink()
    else:
        data = bytearray(codes.read_bytes())
        data[len(data) // 2] ^= 0xFF
        codes.write_bytes(bytes(data))
    return EmbeddingStore.open(root)


@pytest.mark.parametrize("what", ["codes", "scale", "copied", "missing"])
def test_damage_is_found(tmp_path: Path, what: str) -> None:
    store = _damaged(tmp_path, what)
    with pytest.raises(TileSAMError, match="damaged"):
        store.read_tile(0, 0, 0)
    check = store.verify()
    assert not check.ok
    store.read_tile(0, 0, 1)  # the other tile is untouched


def test_q8_refused_for_sam2_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(TileSAMError, match="SAM 2"):
        EmbeddingStore.create(
            tmp_path / "s2.zarr", signature=SIG, grid_shape=(1, 1, 1),
            embedding_shape=(8, 4, 4), high_res_shapes=[(4, 8, 8)], encoding="q8",
        )  # fmt: skip
    with pytest.raises(TileSAMError, match="encoding"):
        _store(tmp_path / "x.zarr", (8, 4, 4), encoding="bf16")


def test_a_q8_cache_from_the_command_line_gives_the_float16_cache_s_mask(tmp_path) -> None:
    """``--cache-encoding q8`` makes a format-4 cache that a later command reopens as it
    is (no option needed) and whose click gives the float16 cache's mask."""
    import tifffile

    from tilesam.cli import main
    from tilesam.io import open_image
    from tilesam.samples import load_sample

    image = load_sample("nuclei_heldout")[0]
    tifffile.imwrite(tmp_path / "nuclei.tif", image)
    masks = {}
    for encoding in ("float16", "q8"):
        cache = tmp_path / f"{encoding}.zarr"
        embed = ["embed", str(tmp_path / "nuclei.tif"), "--cache", str(cache), "--tile", "256"]
        assert main([*embed, "--cache-encoding", encoding]) == 0
        out = tmp_path / f"{encoding}.tif"
        click = ["segment", str(tmp_path / "nuclei.tif"), "--cache", str(cache)]
        assert main([*click, "--point", "256,252", "--out", str(out)]) == 0
        masks[encoding] = open_image(out).read() > 0
    assert masks["q8"].sum() > 100
    assert (masks["q8"] == masks["float16"]).mean() >= 0.999
