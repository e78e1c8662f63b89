"""``tilesam evaluate --auto`` on real nuclei with the bundled `tiny`: a row per model and
mode beside the classical baseline, in the table, the JSON and the CSV; bad input refused
before any work."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu

import tilesam
from tilesam.cli import main
from tilesam.evaluate.instances import score_instances
from tilesam.models.instance_head import bundled_head
from tilesam.models.registry import MODELS
from tilesam.models.weights import bundled_path
from tilesam.samples import load_sample

# Two crops of the sample fields with their hand-drawn labels: nuclei cut by the crop's edge
# stay in, as they would in any tile of a larger annotation.
CROPS = {
    "nuclei": ("nuclei", (slice(0, 128), slice(0, 160))),
    "heldout": ("nuclei_heldout", (slice(200, 392), slice(150, 342))),
}
FAST = ["--points-per-side", "16"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("auto_eval")
    for name, (sample, window) in CROPS.items():
        image, truth = load_sample(sample)
        tifffile.imwrite(root / f"{name}.tif", image[window])
        tifffile.imwrite(root / f"{name}_labels.tif", truth[window].astype(np.uint16))
    return root


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread, as tests/automatic decodes: the batched decoder's small operations
    gain little from a second one on a shared 2-core machine (the setting is restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def evaluated(folder, tiny, tmp_path_factory) -> tuple[Path, dict, str]:
    """One run over the crops: tiny and the same weights under a second name, grid and
    instance modes (tiny's bundled instance head given for both), beside the baseline.
    Returns the output folder, the JSON and what was printed."""
    root = tmp_path_factory.mktemp("auto_eval_run")
    (root / "run").mkdir()
    shutil.copy(bundled_path(MODELS["tiny"]), root / "run" / "model.pt")
    argv = [
        "evaluate", "--auto", "--images", folder, "--model", "tiny",
        "--model", root / "run" / "model.pt", "--modes", "grid", "instance", "--set", "min_size=40",
        "--instance-head", bundled_head(tiny), "--out", root / "ev", *FAST,
    ]  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([str(a) for a in argv]) == 0
    return root / "ev", json.loads((root / "ev" / "auto.json").read_text()), printed.getvalue()


def test_each_model_and_mode_has_a_row_beside_the_baseline(folder, evaluated) -> None:
    _, report, printed = evaluated
    methods = report["methods"]
    assert list(methods) == [
        "tiny grid",
        "tiny instance",
        "model grid",
        "model instance",
        "baseline",
    ]
    n_true = sum(len(np.unique(tifffile.imread(folder / f"{n}_labels.tif"))) - 1 for n in CROPS)
    for name, method in methods.items():
        mean = method["mean"]
        assert mean["images"] == 2 and mean["n_true"] == n_true, name
        for key in ("f1", "precision", "recall", "msa", "sa50"):
            assert 0 <= mean[key] <= 1, (name, key)
        assert mean["msa"] <= mean["sa50"] and mean["seconds_per_image"] > 0
        assert [row["image"] for row in method["images"]] == sorted(CROPS)
        assert name in printed
    # The same weights under two names: the same figures.
    for mode, key in itertools.product(("grid", "instance"), ("f1", "msa", "sa50", "n_pred")):
        assert methods[f"tiny {mode}"]["mean"][key] == methods[f"model {mode}"]["mean"][key]
    assert methods["baseline"]["notes"]["min_distance"] in (3, 5, 7, 10, 15, 20, 30, 40, 50)
    assert report["info"]["settings"]["points_per_side"] == 16
    assert report["info"]["settings"]["min_size"] == 40


def test_tiny_grid_beats_trivial_predictions(folder, evaluated) -> None:
    grid = evaluated[1]["methods"]["tiny grid"]["mean"]["f1"]
    assert grid > _mean_f1(folder, np.ones_like) + 0.5  # the image as one object
    assert grid > _mean_f1(folder, lambda im: ndimage.label(im > threshold_otsu(im))[0])


def test_the_labels_scored_are_segment_everythings(folder, evaluated) -> None:
    image = tifffile.imread(folder / "heldout.tif")
    labels = tilesam.segment_everything(image, mode="grid", points_per_side=16, min_size=40).labels
    truth = tifffile.imread(folder / "heldout_labels.tif")
    row = evaluated[1]["methods"]["tiny grid"]["images"][0]
    assert row["image"] == "heldout" and row["n_pred"] == labels.max()
    assert row["f1"] == pytest.approx(score_instances(labels, truth).f1)


def test_the_csv_and_the_table_hold_the_same_figures(evaluated) -> None:
    out, report, printed = evaluated
    with open(out / "auto.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    methods = report["methods"]
    assert [(r["method"], r["image"]) for r in rows] == [
        (m, n) for m in methods for n in sorted(CROPS)
    ]
    for name, method in methods.items():
        f1 = [float(r["f1"]) for r in rows if r["method"] == name]
        assert np.mean(f1) == pytest.approx(method["mean"]["f1"])
        assert f"{method['mean']['f1']:.3f}" in printed
    assert (out / "auto_table.txt").read_text().strip() in printed


def _mean_f1(folder: Path, predict) -> float:
    """Mean F1 of `predict` (image to labels) over the crops."""
    scores = []
    for name in CROPS:
        image = tifffile.imread(folder / f"{name}.tif")
        truth = tifffile.imread(folder / f"{name}_labels.tif")
        scores.append(score_instances(predict(image), truth).f1)
    return float(np.mean(scores))


def test_without_modes_the_models_default_and_without_baseline_one_row(
    folder, tmp_path, capsys
) -> None:
    one = tmp_path / "one"
    one.mkdir()
    for name in ("nuclei.tif", "nuclei_labels.tif"):
        shutil.copy(folder / name, one / name)
    out = tmp_path / "ev"
    argv = ["evaluate", "--auto", "--images", one, "--labels", one, "--no-baseline"]
    assert run(capsys, *argv, "--out", out, *FAST)[0] == 0
    # The mode segment_everything itself takes for tiny when given none.
    mode = tilesam.segment_everything(tifffile.imread(one / "nuclei.tif"), points_per_side=16).mode
    assert list(json.loads((out / "auto.json").read_text())["methods"]) == [f"tiny {mode}"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--modes", "watershed"], "Unknown mode 'watershed'"),
        (["--set", "min_score=2"], "min_score must be a number from 0 to 1"),
        (["--set", "nms"], "Could not read --set 'nms'"),
        (["--set", "smoothness=1"], "Unknown segment-everything option(s) smoothness"),
        (["--points-per-side", "0"], "points_per_side must be a whole number >= 1"),
    ],
)
def test_bad_options_are_refused_before_any_work(folder, tmp_path, capsys, extra, message):
    out = tmp_path / "ev"
    code, _, err = run(capsys, "evaluate", "--auto", "--images", folder, "--out", out, *extra)
    assert code == 2 and message in err
    assert not out.exists()


def test_missing_images_or_labels_and_stray_options_are_refused(folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "evaluate", "--auto", "--images", empty)
    assert code == 2 and "No images found" in err
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(folder / "nuclei.tif", lonely / "nuclei.tif")
    code, _, err = run(capsys, "evaluate", "--auto", "--images", lonely)
    assert code == 2 and "No label image for" in err
    code, _, err = run(capsys, "evaluate", "--images", folder, "--modes", "grid")
    assert code == 2 and "--modes apply to segment-everything: add --auto" in err
