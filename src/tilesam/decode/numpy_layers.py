"""The NumPy decoder's per-token layers: layer norm and the exact (erf) GELU.

GELU runs on every channel of every pixel the decoder upscales (3 M values for a
64 x 64 grid): ``scipy.special.erf`` took 50 ms of a 110 ms click on a large object.
:func:`gelu` computes the same function from NumPy's vectorised ``exp`` in blocks that stay
in the processor's cache, about 3x faster, within 2.5e-7 of the exact GELU divided by
``|x|`` (scipy's float32 erf: 1.1e-7; torch's CPU GELU uses an erf within 1.5e-7).
"""

from __future__ import annotations

import numpy as np

# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), z >= 0: fractional error below
# 1.2e-7 everywhere (Numerical Recipes' erfcc, after Chebyshev); P's coefficients, highest
# power first, then its constant term.
_ERFC_POLY = tuple(
    np.float32(c)
    for c in (
        0.17087277,
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
    )
)
_ERFC_CONST = np.float32(-1.26551223)
# Values per block: its four float32 buffers (512 kB) stay in a core's L2 cache.
_BLOCK = 1 << 15


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Layer norm over the last axis (a new array).

    The mean is a product with a ``1 / C`` vector and the variance an ``einsum`` of the
    centred values with themselves: NumPy's reductions along a short last axis took 3x as
    long on the decoder's 4096 x 256 image tokens, and squaring first wrote and read one
    more array of their size (2.1 -> 1.75 ms).
    """
    average = np.full(x.shape[-1], 1 / x.shape[-1], np.float32)
    centred = x - (x @ average)[..., None]
    var = np.einsum("...c,...c->...", centred, centred)
    var *= np.float32(1 / x.shape[-1])
    var += np.float32(eps)
    centred /= np.sqrt(var, out=var)[..., None]
    centred *= weight
    centred += bias
    return centred


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact GELU, ``x Phi(x)``, as torch's ``nn.GELU()``; in place on `x` (float32).

    ``x Phi(x) = max(x, 0) - |x| erfc(|x| / sqrt 2) / 2`` holds for either sign, so no
    value takes a branch; erfc as :data:`_ERFC_POLY` says.

    Examples
    --------
    >>> from scipy.special import erf
    >>> x = np.linspace(-6, 6, 1001, dtype=np.float32)
    >>> exact = x * (1 + erf(x / np.sqrt(2))) / 2
    >>> bool(np.abs(gelu(x.copy()) - exact).max() < 1e-6)
    True
    """
    flat = x.reshape(-1)
    buffers = np.empty((4, min(_BLOCK, flat.size)), np.float32)
    for start in range(0, flat.size, _BLOCK):
        v = flat[start : start + _BLOCK]
        a, t, e, p = buffers[:, : len(v)]
        np.abs(v, out=a)
        v += a  # 2 max(x, 0), exactly
        np.square(a, out=e)
        e *= np.float32(-0.5)  # -z^2, z = |x| / sqrt 2
        np.multiply(a, np.float32(2**-1.5), out=t)
        t += 1
        np.reciprocal(t, out=t)  # t = 1 / (1 + z / 2)
        np.multiply(t, _ERFC_POLY[0], out=p)
        for c in _ERFC_POLY[1:]:
            p += c
            p *= t
        e += p
        e += _ERFC_CONST
        np.exp(e, out=e)
        e *= t  # erfc(z)
        e *= a
        v -= e
        v *= np.float32(0.5)
    return x
