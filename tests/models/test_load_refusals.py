"""What loading a model refuses, and how it says so: non-finite weights, checkpoints that
hold code, devices this machine lacks; and pixels that floats cannot tell apart.

Every checkpoint here is a real file written with ``torch.save`` (or cut short) from the
small SAM fixture, then read through :func:`tilesam.load_model` as a user reads it.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import tilesam
from tilesam.models.preprocess import intensity_range, normalize_intensity
from tilesam.models.registry import ARCHITECTURES, build_sam
from tilesam.models.sam_model import SamModel

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
CHECKPOINT = FIXTURES / "sam1_small_fp16.pth"
Error = tilesam.TileSAMError


def _state() -> dict[str, torch.Tensor]:
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)


# --- non-finite weights ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weight_is_refused_naming_the_tensor(bad: float, tmp_path: Path) -> None:
    state = _state()
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    state[key] = state[key].clone()
    state[key][3, 5] = bad
    path = tmp_path / "diverged.pth"
    torch.save({"model": state, "epoch": 7}, path)  # as a training run saves it
    with pytest.raises(Error) as err:
        tilesam.load_model(checkpoint=path, device="cpu")
    message = str(err.value)
    assert f"'{key}'" in message and str(path) in message
    assert ("1 NaN" if np.isnan(bad) else "1 infinite") in message
    assert "earlier checkpoint" in message


def test_first_of_several_non_finite_tensors_is_named(tmp_path: Path) -> None:
    state = _state()
    keys = [k for k in state if state[k].is_floating_point()]
    for key in (keys[4], keys[9]):
        state[key] = torch.full_like(state[key], float("nan"))
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(Error, match=rf"'{keys[4]}' holds .* \(and 1 more tensors\)"):
        tilesam.load_model(checkpoint=path, device="cpu")


# --- checkpoints that hold code ----------------------------------------------------------


class _MakesFolder:
    """Unpickled, this calls ``os.makedirs(path)``: code from the file, run on load."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def _with_code(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "with_code.pth"
    torch.save({"model": _state(), "hook": _MakesFolder(marker)}, path)
    return path, marker


def test_checkpoint_referencing_a_forbidden_module_says_what_it_is(tmp_path: Path) -> None:
    path, marker = _with_code(tmp_path)
    with pytest.raises(Error) as err:
        tilesam.load_model(checkpoint=path, device="cpu")
    message = str(err.value)
    assert "holds code or Python objects that safe loading refuses" in message
    assert "os.makedirs" in message and "'os'" in message
    assert "trust_checkpoint=True" in message and "--trust-checkpoint" in message
    assert "only if you trust" in message
    assert "truncated" not in message and "download it again" not in message
    assert not marker.exists()  # refused before any of its code ran


def test_trusted_checkpoint_with_code_loads_and_runs_it(tmp_path: Path) -> None:
    path, marker = _with_code(tmp_path)
    model = tilesam.load_model(checkpoint=path, device="cpu", trust_checkpoint=True)
    assert model.architecture.encoder == "vit"
    assert marker.is_dir()  # what trusting means: the file's code ran


@pytest.mark.parametrize("kind", ["weights_only", "with_code"])
def test_truncated_checkpoint_is_still_called_truncated(kind: str, tmp_path: Path) -> None:
    source = CHECKPOINT if kind == "weights_only" else _with_code(tmp_path)[0]
    data = source.read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) * 2 // 3])
    for trust in (False, True):
        with pytest.raises(Error, match="truncated or not a PyTorch checkpoint") as err:
            tilesam.load_model(checkpoint=path, device="cpu", trust_checkpoint=trust)
        assert "trust_checkpoint" not in str(err.value)


def test_trusted_checkpoint_needing_a_missing_package_says_so(tmp_path, monkeypatch) -> None:
    plugin = types.ModuleType("tilesam_test_plugin_gone")

    class Config:
        lr = 1e-4

    Config.__module__, Config.__qualname__ = plugin.__name__, "Config"
    plugin.Config = Config
    monkeypatch.setitem(sys.modules, plugin.__name__, plugin)
    path = tmp_path / "needs_plugin.pth"
    torch.save({"model": _state(), "config": Config()}, path)
    monkeypatch.delitem(sys.modules, plugin.__name__)  # the package is not installed here
    with pytest.raises(Error, match="safe loading refuses.*Config"):
        tilesam.load_model(checkpoint=path, device="cpu")
    with pytest.raises(Error) as err:
        tilesam.load_model(checkpoint=path, device="cpu", trust_checkpoint=True)
    message = str(err.value)
    assert "tilesam_test_plugin_gone" in message and "not installed" in message
    assert "truncated" not in message


# --- devices -------------------------------------------------------------------------------

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
no_mps = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")


@pytest.mark.parametrize(
    "device",
    [
        pytest.param("cuda", marks=no_cuda),
        f"cuda:{torch.cuda.device_count()}",  # one past the last GPU: absent on any machine
        pytest.param("mps", marks=no_mps),
    ],
)
def test_unavailable_device_is_one_error_naming_what_is_available(device: str) -> None:
    with pytest.raises(Error) as err:
        tilesam.load_model("tiny", device=device)
    message = str(err.value)
    assert f"Device '{device}' is not available" in message
    assert "Available here: cpu" in message and "--device cpu" in message


def test_unavailable_device_fails_before_reading_the_checkpoint(tmp_path: Path) -> None:
    missing = tmp_path / "not_there.pth"
    with pytest.raises(Error, match="Device 'cuda:99' is not available"):
        tilesam.load_model(checkpoint=missing, device="cuda:99")


def test_sam_model_built_directly_checks_its_device() -> None:
    sam = build_sam(ARCHITECTURES["tiny"])
    with pytest.raises(Error, match="Device 'cuda:99' is not available.*cpu"):
        SamModel(sam, name="tiny", architecture=ARCHITECTURES["tiny"], device="cuda:99")


def test_unknown_device_name() -> None:
    with pytest.raises(Error, match="Unknown device 'gpu0'.*available here: cpu"):
        tilesam.load_model("tiny", device="gpu0")


# --- 64-bit pixels ------------------------------------------------------------------------


def _pattern() -> np.ndarray:
    """A 96 x 128 image of 1000 grey values: a bright disc on a ramp."""
    y, x = np.mgrid[:96, :128]
    return (x * 4 + 600 * ((y - 48) ** 2 + (x - 64) ** 2 < 30**2)).astype(np.int64) % 1000


def test_int64_near_2_to_62_is_embedded_like_the_same_values_near_zero(random_tiny) -> None:
    """The attack: pixels 2**62 + 0..999 were called constant (compared as floats)."""
    model = random_tiny(0)
    pattern = _pattern()
    far = np.int64(2**62) + pattern
    assert len(np.unique(far.astype(np.float64))) <= 2  # what floats make of 1000 values
    np.testing.assert_array_equal(normalize_intensity(far), normalize_intensity(pattern))
    near = model.embed(pattern.astype(np.uint16)).features
    np.testing.assert_allclose(model.embed(far).features, near, atol=1e-5)
    for dtype in (np.uint64, np.int64):
        flipped = np.iinfo(dtype).max - pattern.astype(dtype)  # near the top of the type
        np.testing.assert_allclose(
            normalize_intensity(flipped), 255 - normalize_intensity(pattern), atol=1e-4
        )


def test_int64_range_floats_cannot_hold_is_refused_clearly() -> None:
    """A cache keeps a float range: 1000 values near 2**62 fall between two floats."""
    with pytest.raises(Error) as err:
        intensity_range(np.int64(2**62) + _pattern())
    message = str(err.value)
    assert "constant" not in message
    assert "steps of 1024" in message and "image - image.min()" in message


def test_wide_int64_range_near_2_to_62_normalises_exactly() -> None:
    pattern = _pattern() * 10_000  # 0 .. ~1e7: wide enough for float64 at 2**62
    far = np.int64(2**62) + pattern
    low, high = intensity_range(far)
    assert high - low == pytest.approx(np.ptp(np.percentile(pattern, (0.5, 99.5))), rel=1e-3)
    np.testing.assert_allclose(
        normalize_intensity(far, (low, high)),
        normalize_intensity(pattern, (low - 2**62, high - 2**62)),
        atol=0.05,
    )


def test_wide_32_bit_and_float64_pixels_keep_their_steps() -> None:
    """float32 (24 bits) would merge neighbouring values of these before scaling."""
    steps = np.array([[0, 1, 2, 3]])
    for image in (2**30 + steps.astype(np.int32), 1e9 + steps.astype(np.float64)):
        np.testing.assert_allclose(normalize_intensity(image, (image.min(), image.max())),
                                   [[0, 85, 170, 255]], atol=1e-4)  # fmt: skip
