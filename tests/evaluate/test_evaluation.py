"""evaluate() with a real (randomly initialised, small) SAM: the mechanics, not the scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from tilesam.errors import TileSAMError
from tilesam.evaluate.datasets import LabelledImage, LabelledImageFolder
from tilesam.evaluate.evaluation_report import compare, plot_results
from tilesam.evaluate.evaluation_result import EvaluationResult, ObjectResult
from tilesam.evaluate.scoring import MIN_OBJECT_PIXELS, _select_objects, evaluate
from tilesam.evaluate.simulated_prompts import center_point

try:
    from tilesam import load_model
except ImportError:  # the model API is written in parallel
    load_model = None

CHECKPOINT = Path(__file__).parents[1] / "data/fixtures/sam1_small_fp16.pth"
N_CLICKS = 3
needs_model = pytest.mark.skipif(load_model is None, reason="tilesam.load_model not available yet")


@pytest.fixture(scope="module")
def one_thread():
    """The decoder runs many small steps: on a shared 2-core machine one thread is faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(one_thread):
    return load_model(checkpoint=CHECKPOINT)


def _disc(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    """Two images: gray with two nuclei and a 3-pixel speck, RGB with one nucleus."""
    folder = tmp_path_factory.mktemp("eval_data")
    labels = np.zeros((96, 128), np.uint16)
    labels[_disc(labels.shape, (30, 40), 12)] = 1
    labels[_disc(labels.shape, (60, 95), 9)] = 5
    labels[90, 3:6] = 7  # under MIN_OBJECT_PIXELS: skipped
    image = (labels > 0) * 180 + 20
    tifffile.imwrite(folder / "gray.tif", image.astype(np.uint8))
    tifffile.imwrite(folder / "gray_labels.tif", labels)
    rgb_labels = _disc((80, 80), (40, 36), 14).astype(np.uint8)
    rgb = np.repeat((rgb_labels[..., None] * 200 + 30).astype(np.uint8), 3, axis=2)
    tifffile.imwrite(folder / "rgb.tif", rgb, photometric="rgb")
    tifffile.imwrite(folder / "rgb_labels.tif", rgb_labels)
    return folder


@pytest.fixture(scope="module")
def dataset(data_folder) -> LabelledImageFolder:
    return LabelledImageFolder(data_folder)


@pytest.fixture(scope="module")
def result(model, dataset) -> EvaluationResult:
    return evaluate(model, dataset, n_clicks=N_CLICKS, progress=False)


@needs_model
def test_result_has_one_row_per_object(result, dataset):
    assert [(o.image, o.object_id) for o in result.objects] == [
        ("gray", 1),
        ("gray", 5),
        ("rgb", 1),
    ]
    assert result.info["n_skipped_small"] == 1 and result.info["n_images"] == 2
    assert result.info["model"] == "sam1_small_fp16"
    for row in result.objects:
        ious = [row.point_iou, row.box_iou, *row.click_ious]
        assert all(0.0 <= v <= 1.0 for v in ious)
        assert len(row.click_ious) == N_CLICKS and row.click_ious[0] == row.point_iou
        assert 1 <= len(row.clicks) <= N_CLICKS
        labels = next(item.labels for item in dataset if item.name == row.image)
        assert row.area == np.count_nonzero(labels == row.object_id)
        assert row.clicks[0] == (*center_point(labels == row.object_id), 1)


@needs_model
def test_corrective_clicks_land_in_the_error_region(result, model, dataset):
    """Replay one object: each click is in the error of the mask before it, and IoUs agree."""
    item = dataset[0]
    row = result.objects[0]
    gt = item.labels == row.object_id
    embedding = model.embed(item.image)
    first = model.predict(embedding, points=np.array([row.clicks[0][:2]]), labels=np.array([1]))
    best = int(np.argmax(first.scores))
    mask, logits = first.masks[best], first.low_res_logits[best]
    for k in range(1, len(row.clicks)):
        y, x, label = row.clicks[k]
        assert mask[y, x] != gt[y, x], "the click must fix a wrong pixel"
        assert label == int(gt[y, x]), "positive on a miss, negative on a false positive"
        clicks = row.clicks[: k + 1]
        res = model.predict(
            embedding,
            points=np.array([c[:2] for c in clicks]),
            labels=np.array([c[2] for c in clicks]),
            mask_input=logits,
            multimask=False,
        )
        mask, logits = res.masks[0], res.low_res_logits[0]
        iou = np.count_nonzero(mask & gt) / np.count_nonzero(mask | gt)
        assert iou == pytest.approx(row.click_ious[k], abs=1e-6)


@needs_model
def test_json_round_trip(result, tmp_path):
    path = tmp_path / "eval.json"
    result.to_json(path)
    assert EvaluationResult.from_json(path) == result
    data = json.loads(path.read_text())
    assert data["summary"]["n_objects"] == 3 and len(data["summary"]["clicks"]) == N_CLICKS
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(TileSAMError, match="not a TileSAM evaluation"):
        EvaluationResult.from_json(tmp_path / "other.json")


@needs_model
def test_table_compare_and_plot(result, tmp_path):
    table = result.table()
    for row in ("point", "box", "1 click", f"{N_CLICKS} clicks", "NoC@85", "95% CI"):
        assert row in table
    subset = EvaluationResult(result.objects[:1], N_CLICKS, dict(result.info))
    side_by_side = compare({"random": result, "subset": subset})
    assert "random" in side_by_side and "subset" in side_by_side
    assert "different objects" in side_by_side
    assert "different objects" not in compare({"a": result, "b": result})
    pytest.importorskip("matplotlib")
    result.plot(tmp_path / "one.png")
    plot_results({"random": result, "subset": subset}, tmp_path / "two.png")
    result.plot(tmp_path / "three.png", others={"random": result, "subset": subset})
    assert (tmp_path / "one.png").stat().st_size > 1000
    assert (tmp_path / "two.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "three.png").stat().st_size > 1000


def test_object_subset_is_seeded_by_seed_and_image_name():
    labels = np.zeros((40, 40), np.uint32)
    for i in range(8):
        labels[i * 5 : i * 5 + 4, 2:10] = i + 1
    labels[0, 20] = 9  # one pixel: skipped
    everything, skipped = _select_objects(labels, "x", None, seed=0)
    assert [i for i, _ in everything] == list(range(1, 9)) and skipped == 1
    assert all(area == 32 for _, area in everything)
    picks = {tuple(_select_objects(labels, "x", 3, seed=0)[0]) for _ in range(3)}
    assert len(picks) == 1 and len(next(iter(picks))) == 3
    others = {tuple(_select_objects(labels, name, 3, 0)[0]) for name in "abcdefgh"}
    assert len(others) > 1


@needs_model
def test_user_errors(model):
    volume = LabelledImage(np.zeros((3, 8, 8)), np.ones((3, 8, 8), np.uint32), "vol")
    with pytest.raises(TileSAMError, match="2D images"):
        evaluate(model, [volume], progress=False)
    with pytest.raises(TileSAMError, match="n_clicks"):
        evaluate(model, [volume], n_clicks=0, progress=False)
    speck = np.zeros((8, 8), np.uint32)
    speck[0, 0] = 1
    tiny = LabelledImage(np.zeros((8, 8), np.uint8), speck, "tiny")
    with pytest.raises(TileSAMError, match=f"at least {MIN_OBJECT_PIXELS} pixels"):
        evaluate(model, [tiny], progress=False)


def _row(image: str, object_id: int, ious: list[float]) -> ObjectResult:
    return ObjectResult(image, object_id, 50, ious[0], 0.5, ious, [(1, 1, 1)])


def test_summary_noc_and_intervals():
    """Summaries computed from known rows (no model needed)."""
    rows = [
        _row("a", 1, [0.2, 0.9, 0.95]),
        _row("a", 2, [0.4, 0.6, 0.8]),
        _row("b", 1, [0.86, 0.9, 0.91]),
    ]
    summary = EvaluationResult(rows, 3).summary
    assert summary["point"] == pytest.approx(0.4866667, abs=1e-6)
    assert summary["clicks"] == pytest.approx([0.4866667, 0.8, 0.8866667], abs=1e-6)
    assert summary["noc85"] == pytest.approx((2 + 3 + 1) / 3)
    assert summary["noc90"] == pytest.approx((2 + 3 + 2) / 3)
    for (low, high), mean in zip(summary["ci95"]["clicks"], summary["clicks"], strict=True):
        assert low <= mean <= high


@needs_model
def test_command_line_keeps_every_model_apart(data_folder, tmp_path, capsys):
    # Every training run exports model.pt: two runs compared are told apart by their folder.
    import shutil

    from tilesam.cli import main

    for run in ("run1", "run2"):
        (tmp_path / run).mkdir()
        shutil.copy(CHECKPOINT, tmp_path / run / "model.pt")
    images, out = data_folder, tmp_path / "ev"
    argv = ["evaluate", "--images", str(images), "--clicks", "1", "--out", str(out)]
    models = [
        "--model",
        str(tmp_path / "run1/model.pt"),
        "--model",
        str(tmp_path / "run2/model.pt"),
    ]
    assert main(argv + models) == 0
    table = (out / "table.txt").read_text().splitlines()[0]
    assert "run1/model" in table and "run2/model" in table
    assert {p.name for p in out.glob("*.json")} == {"run1_model.json", "run2_model.json"}
    capsys.readouterr()
    assert main(argv + ["--model", str(CHECKPOINT), "--model", str(CHECKPOINT)]) == 2
    assert "both named 'fixtures/sam1_small_fp16'" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main([*argv[:-1], str(tmp_path / "afile"), "--model", str(CHECKPOINT)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
