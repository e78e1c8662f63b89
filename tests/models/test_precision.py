"""The image encoder's number format: ``precision`` of `load_model`, `Session` and the CLI.

The masks of a bfloat16 encoder are held to the official outputs in
``test_official_fixtures.py``; here: what ``"auto"`` picks, and that the choice reaches
the encoder through every way a model is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tilesam
from tilesam.cache.distributed import recipe_from_model
from tilesam.models import precision as precision_module
from tilesam.samples import load_sample

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
VIT_T = FIXTURES / "vit_t_small_fp16.pth"


@pytest.fixture(params=[True, False], ids=["native-bf16", "no-bf16"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test as on hardware with and without native bfloat16 (AMX, a GPU)."""
    monkeypatch.setattr(precision_module, "native_bfloat16", lambda device: request.param)
    return request.param


def test_auto_picks_bfloat16_for_a_transformer_encoder_only_where_native(native: bool) -> None:
    vit_t = tilesam.load_model(checkpoint=VIT_T, device="cpu")
    tiny = tilesam.load_model("tiny", device="cpu")
    assert vit_t.encoder_dtype == (torch.bfloat16 if native else torch.float32)
    assert tiny.encoder_dtype == torch.float32  # a small CNN: bfloat16 gains nothing


def test_explicit_precision_is_kept_whatever_the_hardware(native: bool) -> None:
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        model = tilesam.load_model(checkpoint=VIT_T, device="cpu", precision=precision)
        assert model.encoder_dtype == dtype


def test_bfloat16_embeddings_differ_from_float32_by_about_one_percent() -> None:
    image, _ = load_sample("nuclei")
    out = {
        p: tilesam.load_model(checkpoint=VIT_T, device="cpu", precision=p).embed(image).features
        for p in ("float32", "bfloat16")
    }
    assert out["bfloat16"].dtype == torch.float32  # handed on in float32, as always
    relative = float((out["bfloat16"] - out["float32"]).norm() / out["float32"].norm())
    assert 0 < relative < 0.03


def test_a_session_loads_its_model_in_the_precision_asked(tmp_path: Path) -> None:
    image, _ = load_sample("nuclei")
    session = tilesam.Session(image, VIT_T, tmp_path / "c.zarr", precision="float32")
    assert session.model.encoder_dtype == torch.float32
    # Dask workers rebuild the model in the same precision.
    assert recipe_from_model(session.model, tmp_path).build().encoder_dtype == torch.float32
    reopened = tilesam.Session(image, VIT_T, tmp_path / "c.zarr", precision="bfloat16")
    assert reopened.model.encoder_dtype == torch.bfloat16


def test_an_unknown_precision_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    image = np.zeros((64, 64), np.uint8)
    with pytest.raises(tilesam.TileSAMError, match="Unknown precision 'half'.*bfloat16"):
        tilesam.Session(image, "tiny", tmp_path / "c.zarr", precision="half")
    assert not (tmp_path / "c.zarr").exists()
    with pytest.raises(tilesam.TileSAMError, match="Unknown precision"):
        tilesam.load_model("tiny", precision="fp16")


def test_the_command_line_passes_precision_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tifffile

    from tilesam.cli import main
    from tilesam.models import loading

    asked = []
    load = loading.shared_model

    def spy(*args, precision: str = "auto", **kwargs) -> tilesam.SamModel:
        asked.append(precision)
        return load(*args, precision=precision, **kwargs)

    monkeypatch.setattr(loading, "shared_model", spy)
    image, _ = load_sample("nuclei")
    tifffile.imwrite(tmp_path / "nuclei.tif", image)
    args = ["embed", str(tmp_path / "nuclei.tif"), "--checkpoint", str(VIT_T)]
    assert main([*args, "--cache", str(tmp_path / "c.zarr"), "--precision", "bfloat16"]) == 0
    assert asked == ["bfloat16"]
    with pytest.raises(SystemExit):
        main([*args, "--precision", "half"])
