"""Checkpoints in the official layouts and the wrappers others save them in are recognised.

``official_state_dict_specs.json`` lists every key and shape of the full-size official
checkpoints. ViT-L/H are checked with meta tensors (no memory, no time); ViT-B and MobileSAM
as real random weights written to a file and loaded the way users load them.
"""

from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path

import pytest
import torch

import tilesam
from tilesam.models.checkpoint import check_compatible, infer_architecture
from tilesam.models.image_encoder import ImageEncoderViT
from tilesam.models.registry import ARCHITECTURES, Architecture, build_sam
from tilesam.models.tiny_vit import TinyViT

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
SPECS: dict[str, dict[str, list[int]]] = json.loads(
    (FIXTURES / "official_state_dict_specs.json").read_text()
)
SMALL_SAM = FIXTURES / "sam1_small_fp16.pth"

# The hyperparameters that distinguish the official models of each encoder family.
KEY_HYPERPARAMETERS = {
    "vit": ("embed_dim", "depth", "num_heads", "global_attn_indexes"),
    "tiny_vit": ("embed_dims", "depths", "num_heads", "window_sizes"),
}
ENCODER_CLASSES = {"vit": ImageEncoderViT, "tiny_vit": TinyViT}


def _spec_state(name: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """A state dict with the official keys and shapes: random values, or meta tensors."""
    state = {}
    for key, shape in SPECS[name].items():
        if key.endswith("num_batches_tracked"):  # BatchNorm's step counter is an integer
            state[key] = torch.zeros(shape, dtype=torch.long, device=device)
        elif device == "meta":
            state[key] = torch.empty(shape, device="meta")
        else:
            state[key] = torch.randn(shape)
    return state


def _registry_kwargs(arch: Architecture) -> dict:
    """The encoder's constructor arguments as the registry builds it: explicit or default."""
    signature = inspect.signature(ENCODER_CLASSES[arch.encoder])
    defaults = {k: p.default for k, p in signature.parameters.items()}
    return {**defaults, **arch.encoder_kwargs}


def _key_hyperparameters(arch: Architecture) -> dict:
    kwargs = _registry_kwargs(arch)
    values = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in kwargs.items()}
    selected = {k: values[k] for k in KEY_HYPERPARAMETERS[arch.encoder]}
    if arch.encoder == "tiny_vit":
        # TinyViT's first stage is convolutional: its head count leaves no trace in the keys.
        selected["num_heads"] = selected["num_heads"][1:]
    return selected


def _assert_same_weights(model: tilesam.SamModel, state: dict[str, torch.Tensor]) -> None:
    loaded = model.sam.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key].cpu(), value.to(loaded[key].dtype)), key


@pytest.mark.parametrize("name", sorted(SPECS))
def test_official_keys_recognised(name: str) -> None:
    inferred = infer_architecture(_spec_state(name, device="meta"))
    expected = ARCHITECTURES[name]
    assert inferred.encoder == expected.encoder
    assert _key_hyperparameters(inferred) == _key_hyperparameters(expected)
    for field in ("prompt_dim", "image_size", "embedding_size", "decoder_depth"):
        assert getattr(inferred, field) == getattr(expected, field), field


@pytest.mark.parametrize("name", sorted(SPECS))
def test_official_keys_load_into_built_model(name: str) -> None:
    state = _spec_state(name, device="meta")
    with torch.device("meta"):
        sam = build_sam(infer_architecture(state))
    check_compatible(sam.state_dict(), state, name)
    result = sam.load_state_dict(state, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize(
    "name",
    # ViT-B writes and reads 360 MB (~6 s on a quiet CPU); its keys are covered by the meta
    # tests above and the loading path by MobileSAM.
    ["vit_t", pytest.param("vit_b", marks=pytest.mark.slow)],
)
def test_official_layout_file_loads(name: str, tmp_path: Path) -> None:
    """Full-size random weights in the official format, through the public loader."""
    state = _spec_state(name)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = tilesam.load_model(checkpoint=path, device="cpu")
    assert model.architecture.encoder == ARCHITECTURES[name].encoder
    assert _key_hyperparameters(model.architecture) == _key_hyperparameters(ARCHITECTURES[name])
    _assert_same_weights(model, state)


def _small_state() -> dict[str, torch.Tensor]:
    return torch.load(SMALL_SAM, map_location="cpu", weights_only=True)


def _micro_sam(state: dict) -> dict:
    # torch_em's trainer saves the wrapped model (``model.sam``) and the training state.
    return {
        "model_state": {f"sam.{k}": v for k, v in state.items()},
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
        "epoch": 10,
        "iteration": 1000,
    }


WRAPPERS = {
    "micro_sam": _micro_sam,
    "model": lambda state: {"model": state},
    "state_dict": lambda state: {"state_dict": state, "epoch": 3},
    "data_parallel": lambda state: {f"module.{k}": v for k, v in state.items()},
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_wrapped_checkpoint_loads(wrapper: str, tmp_path: Path) -> None:
    state = _small_state()
    path = tmp_path / "wrapped.pt"
    torch.save(WRAPPERS[wrapper](state), path)
    model = tilesam.load_model(checkpoint=path, device="cpu")
    assert model.architecture.encoder == "vit"
    _assert_same_weights(model, state)


class TrainingConfig:
    """A user's own class pickled into a checkpoint: not loadable without unpickling."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


PICKLED_OBJECTS = {
    "namespace": lambda: argparse.Namespace(lr=1e-4, model_type="vit_b"),
    "custom_class": lambda: TrainingConfig(lr=1e-4),
}


@pytest.mark.parametrize("kind", sorted(PICKLED_OBJECTS))
def test_pickled_objects_need_trust(kind: str, tmp_path: Path) -> None:
    state = _small_state()
    path = tmp_path / "with_objects.pt"
    torch.save({"model": state, "args": PICKLED_OBJECTS[kind]()}, path)

    with pytest.raises(tilesam.TileSAMError, match="trust_checkpoint=True"):
        tilesam.load_model(checkpoint=path, device="cpu")

    model = tilesam.load_model(checkpoint=path, device="cpu", trust_checkpoint=True)
    _assert_same_weights(model, state)
