"""`token_major`: the features' values, laid out token by token, with torch or NumPy alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tilesam.decode.embedding import token_major


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    stored = rng.normal(size=(16, 6, 5)).astype(np.float16)
    read_only = stored.copy()
    read_only.flags.writeable = False
    return {
        "float16": stored,
        "float32": stored.astype(np.float32),
        "read-only": read_only,
        "negative strides": stored[:, ::-1],
    }


@pytest.mark.parametrize("name", list(_inputs()))
def test_values_kept_and_tokens_a_view(name: str) -> None:
    features = _inputs()[name]
    assert "torch" in sys.modules  # this process: the torch path where torch may share
    out = token_major(features)
    # torch converts what it can share; read-only and negative strides go through NumPy.
    assert (_owner(out) is not None) == (name in ("float16", "float32"))
    assert out.shape == features.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, features.astype(np.float32))
    assert out.reshape(16, -1).T.flags.c_contiguous
    assert token_major(out) is out
    # The decoder's token matrix is a view of it, so torch's transpose copies nothing.
    tokens = torch.from_numpy(out)[None].flatten(2).transpose(1, 2)
    assert tokens.is_contiguous()


def test_torch_converts_to_float32_on_the_cpu_whatever_its_defaults() -> None:
    stored = _inputs()["float16"]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = token_major(stored)
    finally:
        torch.set_default_dtype(previous)
    assert out.dtype == np.float32 and _owner(out) is not None


def _owner(array: np.ndarray) -> torch.Tensor | None:
    """The torch tensor whose memory `array` is, if any."""
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array if isinstance(array, torch.Tensor) else None


def test_numpy_alone_gives_the_same_layout_without_importing_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from tilesam.decode.embedding import token_major
        stored = np.random.default_rng(0).normal(size=(16, 6, 5)).astype(np.float16)
        out = token_major(stored)
        ok = (out == stored.astype(np.float32)).all() and out.transpose(1, 2, 0).flags.c_contiguous
        print(bool(ok), "torch" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["True", "False"]
