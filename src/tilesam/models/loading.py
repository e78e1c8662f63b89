"""``load_model``: from a registry name or a checkpoint file to a ready :class:`SamModel`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from pathlib import Path

import torch

from tilesam.errors import TileSAMError
from tilesam.models.checkpoint import check_compatible, infer_architecture, read_checkpoint
from tilesam.models.precision import check_precision
from tilesam.models.registry import ARCHITECTURES, FAMILIES, build_sam, mask_thresholds
from tilesam.models.sam2 import fit_memory
from tilesam.models.sam2_model import Sam2Model
from tilesam.models.sam_model import SamModel, checked_device
from tilesam.models.weights import DEFAULT_MODEL, file_sha256, model_file

__all__ = ["DEFAULT_MODEL", "cached_model", "load_model", "pick_device", "shared_model"]

# The process's one cache of loaded models: the napari plugin's annotators and a dask
# worker's tasks share each model instead of loading it again.
_LOADED: dict[Hashable, SamModel] = {}
_LOADING = threading.Lock()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA, then Apple's MPS, then the CPU.

    A requested device this machine does not have (``"cuda"`` without a GPU) raises a
    :class:`TileSAMError` naming the devices it has.
    """
    if device is not None:
        return checked_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_model(
    name: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    *,
    trust_checkpoint: bool = False,
    precision: str = "auto",
) -> SamModel:
    """Load a SAM-family model by registry name and/or from a checkpoint file.

    Parameters
    ----------
    name
        A registry name (``tiny``, ``vit_b``, ``vit_t``, ``micro_sam:vit_b_lm``,
        ``sam2.1_hiera_tiny``, ...; see ``tilesam models``). Default: the bundled ``tiny``,
        unless a checkpoint is given. SAM 2.1 models load as a
        :class:`~tilesam.models.sam2_model.Sam2Model`, their video memory included (see
        :class:`~tilesam.models.sam2_tracker.Sam2Tracker`).
    checkpoint
        A checkpoint file. Alone, its architecture is recognised from its keys and shapes;
        with ``name``, it must fit that model's architecture.
    device
        ``"cpu"``, ``"cuda"``, ``"mps"``...; default: the fastest available.
    trust_checkpoint
        Allow checkpoints that need full unpickling (which runs code from the file).
    precision
        The image encoder's number format: ``"auto"`` (bfloat16 for a transformer encoder
        on hardware that multiplies it natively, a GPU or a CPU with AMX, about 2.5 times
        faster; float32 elsewhere), ``"float32"`` or ``"bfloat16"``. See
        :mod:`tilesam.models.precision`.

    Examples
    --------
    >>> model = load_model()  # the bundled default model
    >>> model.name, model.image_size, model.architecture.encoder
    ('tiny', 1024, 'tiny_cnn')

    A downloaded SAM checkpoint loads the same way: ``load_model(checkpoint=
    "sam_vit_b_01ec64.pth")``, or ``load_model("vit_b")`` once the file is in the model cache
    (``tilesam models`` says where).
    """
    target = pick_device(device)  # an unavailable device fails before any reading
    check_precision(precision)  # so does an unknown one
    path, label, entry = model_file(name, checkpoint)
    state = read_checkpoint(path, trust=trust_checkpoint)
    architecture = infer_architecture(state)
    encoder = architecture.encoder
    if entry is not None and ARCHITECTURES[entry.architecture].encoder != encoder:
        named = ARCHITECTURES[entry.architecture].encoder
        raise TileSAMError(
            f"{path} holds a {encoder} model ({FAMILIES[encoder]}), but {entry.name!r} is a "
            f"{named} model ({FAMILIES[named]}): pick the matching name, or pass only the "
            "checkpoint."
        )
    sam = build_sam(architecture)
    if encoder == "hiera":
        # The memory-attention depth leaves the image path's architecture alone: sized here.
        fit_memory(sam, state)
    check_compatible(sam.state_dict(), state, f"a {FAMILIES[encoder]} model")
    sam.load_state_dict(state)
    mask_threshold, box_mask_threshold = mask_thresholds(entry, encoder)
    model_class = Sam2Model if encoder == "hiera" else SamModel
    return model_class(
        sam,
        name=label,
        architecture=architecture,
        weights_hash=file_sha256(path),
        device=target,
        mask_threshold=mask_threshold,
        box_mask_threshold=box_mask_threshold,
        precision=precision,
    )


def cached_model(key: Hashable, build: Callable[[], SamModel]) -> SamModel:
    """The model this process built for `key`, built by `build()` on first use."""
    with _LOADING:
        if key not in _LOADED:
            _LOADED[key] = build()
        return _LOADED[key]


def shared_model(
    name: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    *,
    trust_checkpoint: bool = False,
    precision: str = "auto",
) -> SamModel:
    """:func:`load_model`, loaded once per process for each set of arguments.

    Examples
    --------
    >>> shared_model("tiny", device="cpu") is shared_model("tiny", device="cpu")
    True
    """
    # The file the name or checkpoint resolves to now (a missing one raises here): a file
    # rewritten since (a fine-tuning run saving again) is loaded anew.
    path = model_file(name, checkpoint)[0].expanduser().absolute()
    stamp = path.stat() if path.is_file() else None
    version = None if stamp is None else (stamp.st_size, stamp.st_mtime_ns)
    key = ("load_model", name, str(path), version, str(device), trust_checkpoint, precision)
    return cached_model(
        key,
        lambda: load_model(
            name, checkpoint, device, trust_checkpoint=trust_checkpoint, precision=precision
        ),
    )
