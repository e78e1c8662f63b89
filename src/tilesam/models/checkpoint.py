"""Reading checkpoints safely and recognising their architecture from keys and shapes."""

from __future__ import annotations

import logging
import math
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from tilesam.errors import TileSAMError
from tilesam.models.registry import ARCHITECTURES, Architecture

StateDict = dict[str, torch.Tensor]

logger = logging.getLogger(__name__)

# Wrappers used by micro-sam / torch_em ("model_state"), SAM 2 and TileSAM ("model").
_WRAPPER_KEYS = ("model_state", "model", "state_dict")
_PREFIXES = ("sam.", "module.")


def read_checkpoint(path: str | Path, *, trust: bool = False) -> StateDict:
    """Read a SAM-family checkpoint into a float32 state dict in the official key layout.

    Files are read with ``torch.load(weights_only=True)``. A file that needs full unpickling
    (it stores Python objects besides tensors) is refused unless ``trust=True``: unpickling
    runs code from the file. Weights that are not finite (NaN, infinite) are refused: such a
    model predicts nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise TileSAMError(f"Checkpoint {path} does not exist: check the path.")
    obj = _torch_load(path, trust)
    state = _unwrap(obj, path)
    _check_finite(state, path)
    return state


# What the weights-only unpickler says when it refuses an object it understood, as opposed
# to bytes that are not a pickle at all (a truncated or foreign file).
_REFUSALS = (
    re.compile(r"unsupported GLOBAL (?P<name>\S+) whose module (?P<module>\S+) is blocked"),
    re.compile(r"GLOBAL (?P<name>\S+) was not an allowed global"),
    re.compile(r"Can only (?:create new object|build) .*?but got (?P<name>[^\n]+)"),
    re.compile(r"Trying to call reduce for unrecognized function (?P<name>[^\n]+)"),
    re.compile(r"(?P<name>\S+) must be imported to load"),
)


def _refused(err: Exception) -> re.Match[str] | None:
    """What safe loading refused in `err` (a name, maybe its blocked module), or None."""
    text = str(err)
    return next((m for regex in _REFUSALS if (m := regex.search(text))), None)


def _torch_load(path: Path, trust: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refusal = _refused(err)
        if refusal is None:  # garbage, not a refused Python object
            raise _corrupt(path, err) from err
        if not trust:
            raise _untrusted(path, refusal) from err
    except Exception as err:  # truncated archives, text files: torch raises many types
        raise _corrupt(path, err) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as err:  # a class from a package not installed here
        raise TileSAMError(
            f"Checkpoint {path} stores Python objects that cannot be rebuilt here "
            f"({type(err).__name__}: {str(err)[:200]}): it was saved with a package (or a "
            "version of it) that is not installed. Install that package, or save the "
            "weights alone where it is (torch.save(model.state_dict(), path))."
        ) from err
    except Exception as err:  # anything a foreign pickle can raise
        raise _corrupt(path, err) from err


def _untrusted(path: Path, refusal: re.Match[str]) -> TileSAMError:
    name = refusal.group("name").strip()
    module = refusal.groupdict().get("module")
    if module:
        what = (
            f"it references {name}, from the module {module!r} that safe loading never "
            "allows (it can run commands on this machine)"
        )
    else:
        what = f"it stores Python objects besides tensors ({name})"
    return TileSAMError(
        f"Checkpoint {path} holds code or Python objects that safe loading refuses: {what}. "
        "It is not a damaged download: loading it means unpickling it, and unpickling runs "
        "code from the file. Load it with trust_checkpoint=True (command line: "
        "--trust-checkpoint) only if you trust the file and where it came from; otherwise "
        "get the weights alone (a state dict saved with torch.save) from its publisher."
    )


def _corrupt(path: Path, err: Exception) -> TileSAMError:
    # torch wraps the weights-only unpickler's own words in advice to unpickle: keep its words.
    detail = str(err).rpartition("WeightsUnpickler error:")[2].strip().split("\n")[0]
    return TileSAMError(
        f"Checkpoint {path} could not be read ({type(err).__name__}: {detail[:200]}). "
        "The file is truncated or not a PyTorch checkpoint: download it again."
    )


def _check_finite(state: StateDict, path: Path) -> None:
    """Refuse NaN or infinite weights, naming the first tensor that holds some."""
    bad = [
        key
        for key, value in state.items()
        if value.is_floating_point()
        and value.device.type != "meta"
        and not bool(torch.isfinite(value).all())
    ]
    if not bad:
        return
    value = state[bad[0]]
    nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
    others = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
    raise TileSAMError(
        f"Checkpoint {path} has weights that are not numbers: '{bad[0]}' holds {nan} NaN and "
        f"{inf} infinite values of {value.numel()}{others}. A model with such weights "
        "predicts empty masks with a NaN score. The training run that saved it diverged, or "
        "the file is damaged: use an earlier checkpoint, or download it again."
    )


def _unwrap(obj: object, path: Path) -> StateDict:
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise TileSAMError(
            f"Checkpoint {path} holds no model weights that TileSAM recognises "
            "(expected a state dict, or one under 'model', 'model_state' or 'state_dict')."
        )
    state = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        state[key] = value.float() if value.is_floating_point() else value
    return state


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def infer_architecture(state: StateDict) -> Architecture:
    """Recognise the architecture of a state dict from its keys and shapes (any depth/width)."""
    if "image_encoder.patch_embed.proj.weight" in state:
        encoder, kwargs, image_size = "vit", _vit_kwargs(state), _vit_image_size(state)
    elif "image_encoder.patch_embed.seq.0.c.weight" in state:
        encoder, kwargs, image_size = "tiny_vit", _tiny_vit_kwargs(state), 1024
    elif "image_encoder.stem.0.0.weight" in state:
        encoder, kwargs, image_size = "tiny_cnn", _tiny_cnn_kwargs(state), 1024
    elif "image_encoder.trunk.patch_embed.proj.weight" in state:
        encoder, kwargs, image_size = "hiera", _hiera_kwargs(state), 1024
    else:
        raise TileSAMError(
            "This checkpoint is not a SAM-family model TileSAM knows (SAM ViT, MobileSAM "
            "TinyViT, TileSAM tiny, SAM 2.1 Hiera): its image encoder keys are unfamiliar."
        )
    try:
        return Architecture(
            encoder=encoder,
            encoder_kwargs=kwargs,
            image_size=image_size,
            embedding_size=image_size // 16,
            **_decoder_kwargs(state, "sam_" if encoder == "hiera" else ""),
        )
    except KeyError as err:
        raise TileSAMError(
            f"The checkpoint lacks the key {err}: it is not a complete SAM model."
        ) from None


def _count(state: StateDict, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})


def _vit_kwargs(state: StateDict) -> dict:
    patch = state["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch_size = patch.shape[0], patch.shape[-1]
    depth = _count(state, r"image_encoder\.blocks\.(\d+)\.")
    rel = [state.get(f"image_encoder.blocks.{i}.attn.rel_pos_h") for i in range(depth)]
    use_rel_pos = rel[0] is not None
    grid = _vit_image_size(state) // patch_size
    if use_rel_pos:
        head_dim = rel[0].shape[1]
        global_blocks = tuple(i for i, r in enumerate(rel) if r.shape[0] == 2 * grid - 1)
        windowed = [r.shape[0] for r in rel if r.shape[0] != 2 * grid - 1]
        window = (windowed[0] + 1) // 2 if windowed else 14
    else:  # heads and windows leave no trace without relative positions: SAM's defaults
        head_dim, global_blocks, window = 64, (), 14
    return {
        "embed_dim": embed_dim,
        "depth": depth,
        "num_heads": embed_dim // head_dim,
        "patch_size": patch_size,
        "img_size": grid * patch_size,
        "mlp_ratio": state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim,
        "out_chans": state["image_encoder.neck.0.weight"].shape[0],
        "qkv_bias": "image_encoder.blocks.0.attn.qkv.bias" in state,
        "use_abs_pos": "image_encoder.pos_embed" in state,
        "use_rel_pos": use_rel_pos,
        "window_size": window,
        "global_attn_indexes": global_blocks,
    }


def _vit_image_size(state: StateDict) -> int:
    patch_size = state["image_encoder.patch_embed.proj.weight"].shape[-1]
    pos = state.get("image_encoder.pos_embed")
    return pos.shape[1] * patch_size if pos is not None else 1024


def _tiny_vit_kwargs(state: StateDict) -> dict:
    n_layers = _count(state, r"image_encoder\.layers\.(\d+)\.")
    depths = [
        _count(state, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_layers)
    ]
    dims = [state["image_encoder.layers.0.blocks.0.conv3.c.weight"].shape[0]]
    heads, windows = [2], [7]  # the convolutional first stage has no attention: defaults
    for i in range(1, n_layers):
        biases = state[f"image_encoder.layers.{i}.blocks.0.attn.attention_biases"]
        dims.append(state[f"image_encoder.layers.{i}.blocks.0.attn.norm.weight"].shape[0])
        heads.append(biases.shape[0])
        windows.append(math.isqrt(biases.shape[1]))
    fc1 = state["image_encoder.layers.1.blocks.0.mlp.fc1.weight"]
    expand = state["image_encoder.layers.0.blocks.0.conv1.c.weight"].shape[0] / dims[0]
    return {
        "embed_dims": tuple(dims),
        "depths": tuple(depths),
        "num_heads": tuple(heads),
        "window_sizes": tuple(windows),
        "mlp_ratio": fc1.shape[0] / fc1.shape[1],
        "mbconv_expand_ratio": expand,
        "local_conv_size": state["image_encoder.layers.1.blocks.0.local_conv.c.weight"].shape[-1],
        "out_chans": state["image_encoder.neck.0.weight"].shape[0],
    }


def _tiny_cnn_kwargs(state: StateDict) -> dict:
    n_stages = _count(state, r"image_encoder\.stages\.(\d+)\.")
    widths = [state["image_encoder.stem.1.0.weight"].shape[0]]
    widths += [state[f"image_encoder.stages.{i}.0.0.weight"].shape[0] for i in range(1, n_stages)]
    # Stage 0 starts with an identity, its blocks at index 1..; later stages likewise.
    depths = [_count(state, rf"image_encoder\.stages\.{i}\.(\d+)\.body") for i in range(n_stages)]
    return {
        "widths": tuple(widths),
        "depths": tuple(depths),
        "out_chans": state["image_encoder.neck.0.weight"].shape[0],
    }


def _decoder_kwargs(state: StateDict, prefix: str = "") -> dict:
    """The prompt encoder's and mask decoder's sizes; `prefix` ``"sam_"`` for SAM 2's keys."""
    decoder = f"{prefix}mask_decoder."
    mlp = state.get(f"{decoder}transformer.layers.0.mlp.lin1.weight")
    if mlp is None:  # SAM 2 names the transformer's MLP layers as a list
        mlp = state[f"{decoder}transformer.layers.0.mlp.layers.0.weight"]
    return {
        "prompt_dim": state[f"{decoder}iou_token.weight"].shape[1],
        "mask_in_chans": state[f"{prefix}prompt_encoder.mask_downscaling.3.weight"].shape[0],
        "decoder_depth": _count(state, rf"{re.escape(decoder)}transformer\.layers\.(\d+)\."),
        "decoder_mlp_dim": mlp.shape[0],
        "iou_head_hidden_dim": state[f"{decoder}iou_prediction_head.layers.0.weight"].shape[0],
    }


def _hiera_kwargs(state: StateDict) -> dict:
    """A Hiera trunk's configuration: width, stages and background grid from the shapes; the
    heads, global-attention blocks and windows, which leave no trace in the keys, from the
    official configuration of that width and stages (SAM 2.1 T, S, B+, L, and the models
    fine-tuned from them)."""
    trunk = "image_encoder.trunk."
    embed_dim = state[f"{trunk}patch_embed.proj.weight"].shape[0]
    depth = _count(state, rf"{re.escape(trunk)}blocks\.(\d+)\.")
    # A stage's first block widens the tokens and so has a shortcut projection.
    starts = [i for i in range(depth) if f"{trunk}blocks.{i}.proj.weight" in state]
    bounds = [0, *starts, depth]
    stages = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))
    background = tuple(state[f"{trunk}pos_embed"].shape[-2:])
    for arch in ARCHITECTURES.values():
        known = arch.encoder_kwargs
        if arch.encoder == "hiera" and (known["embed_dim"], known["stages"]) == (embed_dim, stages):
            return {**known, "window_pos_embed_bkg_spatial_size": background}
    # Not an official size (a small test model, say): one head, and global attention in
    # the last block of the third stage, the one block every official size has global.
    window = state[f"{trunk}pos_embed_window"].shape[-1]
    logger.warning(
        "Hiera trunk of width %d and stages %s is no official SAM 2.1 size: assuming one head "
        "and global attention in block %d only.",
        embed_dim,
        stages,
        sum(stages[:3]) - 1,
    )
    return {
        "embed_dim": embed_dim,
        "num_heads": 1,
        "stages": stages,
        "global_att_blocks": (sum(stages[:3]) - 1,),
        "window_spec": (window, 4, 14, 7),
        "window_pos_embed_bkg_spatial_size": background,
    }


def check_compatible(model_state: StateDict, state: StateDict, what: str) -> None:
    """Raise one :class:`TileSAMError` summarising missing, unexpected and mis-shaped keys."""
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in model_state.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or misshaped):
        return
    parts = [
        f"{len(items)} {label} (e.g. {', '.join(items[:3])})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("keys of another shape", misshaped),
        )
        if items
    ]
    raise TileSAMError(
        f"The checkpoint does not fit {what}: {'; '.join(parts)}. Check that the model name "
        "matches the file, or pass only checkpoint=PATH to let TileSAM recognise it."
    )
