"""The number format the image encoder computes in: float32, or bfloat16 where it pays.

An encoder of matrix products (SAM's ViT, MobileSAM's TinyViT, SAM 2's Hiera) runs about
2.5 times faster in bfloat16 on hardware that multiplies it natively: a CUDA GPU, or a CPU
with Intel AMX (Xeon since Sapphire Rapids). Its embeddings then differ from float32's by
about 1 % (relative norm), and masks from them agree with the official float32 outputs on
more than 99.7 % of pixels (``tests/models/test_precision.py``). Elsewhere bfloat16 is
emulated and slower, so ``"auto"`` keeps float32 there. The bundled ``tiny`` is a small
convolutional network that gains nothing from bfloat16 on a CPU: ``"auto"`` keeps it exact.

This module does not import torch until asked for a dtype: a session checks a
``precision`` before it knows whether it will load a model at all.

Prompts on an embedding are always decoded in float32, and embeddings are stored as the
cache's encoding says either way. SAM 2.1's tracking steps follow the encoder's format
(:class:`~tilesam.models.sam2_tracker.Sam2Tracker`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tilesam.errors import TileSAMError

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "check_precision", "encoder_dtype", "native_bfloat16"]

#: The values of ``precision`` (``load_model``, ``Session``, ``--precision``).
PRECISIONS = ("auto", "float32", "bfloat16")

# Encoders made of matrix products, which bfloat16 speeds up where it is native.
_MATMUL_ENCODERS = ("vit", "tiny_vit", "hiera")


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 natively (a CUDA GPU, a CPU with AMX)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # A private function of torch's (2.1 and later); without it, assume no AMX.
        is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(is_amx is not None and is_amx())
    return False


def check_precision(precision: str) -> str:
    """`precision` if it is one of :data:`PRECISIONS`, else a :class:`TileSAMError`."""
    if precision not in PRECISIONS:
        raise TileSAMError(
            f"Unknown precision {precision!r}: use {', '.join(PRECISIONS[:-1])} or "
            f"{PRECISIONS[-1]}."
        )
    return precision


def encoder_dtype(precision: str, device: torch.device, encoder: str) -> torch.dtype:
    """The dtype an encoder of kind `encoder` computes in on `device` for `precision`.

    Examples
    --------
    >>> import torch
    >>> encoder_dtype("float32", torch.device("cpu"), "vit")
    torch.float32
    >>> encoder_dtype("auto", torch.device("cpu"), "tiny_cnn")
    torch.float32
    >>> encoder_dtype("half", torch.device("cpu"), "vit")
    Traceback (most recent call last):
    ...
    tilesam.errors.TileSAMError: Unknown precision 'half': use auto, float32 or bfloat16.
    """
    import torch

    check_precision(precision)
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "auto" and encoder in _MATMUL_ENCODERS and native_bfloat16(device):
        return torch.bfloat16
    return torch.float32
