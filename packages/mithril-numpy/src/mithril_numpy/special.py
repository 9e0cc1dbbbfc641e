"""Vectorised special functions: erf, gelu, sigmoid (no SciPy).

``erf`` is piecewise: for |x| < 1 a polynomial in x^2 times x; for 1 <= |x|
``1 - exp(-x^2) R(1/x) / x`` with ``R`` a polynomial, |x| clipped at 6 (erfc(6)
is below half an ulp of 1). The tables are Chebyshev interpolants computed with
mpmath by ``tools/fit_erf.py``: in float64 the absolute error is about 1e-16;
float32 uses shorter tables accurate to float32 rounding; float16 is computed
in float32. Both branches are evaluated in blocks that stay in cache.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["erf", "gelu", "sigmoid"]

ERF_SMALL = (
    0.9654687386698673,
    -0.1405360890227171,
    0.019852496688983708,
    -0.0022854855611441132,
    0.00021751715604159932,
    -1.7537169441124866e-05,
    1.223382738359897e-06,
    -7.511569286591727e-08,
    4.115800583208149e-09,
    -2.035228405815769e-10,
    9.167619596865806e-12,
    -3.8078824063194953e-13,
    1.4543887079465116e-14,
)
ERFC_LARGE = (
    0.49666648512593864,
    -0.07128287792546653,
    -0.0019368880676878314,
    0.006219717586897201,
    -0.0026693430313657167,
    0.0006408677667148145,
    -2.4390287475552856e-06,
    -9.30349079696263e-05,
    5.9516422078371586e-05,
    -2.3854249275497676e-05,
    5.899295397485301e-06,
    2.0812023046825845e-07,
    -1.2864675113914185e-06,
    9.378958129049037e-07,
    -4.516221205046231e-07,
    1.3144903799165448e-07,
    -1.5776782289362608e-08,
    1.1633421839623281e-08,
    3.830511318853396e-09,
    -2.5282346486375178e-08,
    1.307482047858267e-08,
    2.5892309980969445e-09,
    -2.2750123073805437e-09,
)
ERF_SMALL_F32 = (
    0.9654687770939903,
    -0.14053609137964274,
    0.01985180518381977,
    -0.0022854431428609664,
    0.0002193591913438419,
    -1.7650187079697012e-05,
)
ERFC_LARGE_F32 = (
    0.49666648512593864,
    -0.07128218450710024,
    -0.0019369404324158664,
    0.006210377046682908,
    -0.0026685644182676644,
    0.000675376600467986,
    -6.009654901907617e-06,
    -0.00014142268649276437,
    6.652542566336113e-05,
)

_TABLES = {
    np.dtype(np.float64): (ERF_SMALL, ERFC_LARGE),
    np.dtype(np.float32): (ERF_SMALL_F32, ERFC_LARGE_F32),
}
_BLOCK = 16384  # elements per block: the temporaries stay in cache
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _horner(coefficients: tuple[float, ...], s: np.ndarray) -> np.ndarray:
    out = np.full_like(s, coefficients[-1])
    for c in coefficients[-2::-1]:
        out *= s
        out += c
    return out


def _erf_block(x: np.ndarray, out: np.ndarray, small_table: tuple[float, ...], large_table: tuple[float, ...]) -> None:
    """``out[:] = erf(x)`` for 1-d ``x``; nan stays nan, ±inf gives ±1."""
    a = np.abs(x)
    t = np.minimum(a, 1.0)
    t *= t
    t *= 2.0
    t -= 1.0
    small = _horner(small_table, t)
    small *= x  # erf(x) for |x| < 1 (keeps the sign of -0.0)
    u = np.clip(a, 1.0, 6.0, out=t)
    np.reciprocal(u, out=u)
    s = u * 2.4
    s -= 1.4
    large = _horner(large_table, s)
    large *= u  # exp(x^2) erfc(|x|) for |x| >= 1
    np.minimum(a, 6.0, out=s)
    s *= s
    np.negative(s, out=s)
    np.exp(s, out=s)
    large *= s
    np.subtract(1.0, large, out=large)
    np.copysign(large, x, out=out)
    np.copyto(out, small, where=a < 1.0)


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype erf computes in: float32 for float16 (and smaller), float64 otherwise."""
    return np.dtype(np.float32) if dtype.kind == "f" and dtype.itemsize <= 4 else np.dtype(np.float64)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, element-wise, keeping the float dtype of ``x`` (ints give float64)."""
    x = np.asarray(x)
    work = _work_dtype(x.dtype)
    flat = np.ascontiguousarray(x, dtype=work).reshape(-1)
    out = np.empty_like(flat)
    small_table, large_table = _TABLES[work]
    for start in range(0, flat.size, _BLOCK):
        _erf_block(flat[start : start + _BLOCK], out[start : start + _BLOCK], small_table, large_table)
    return out.reshape(x.shape).astype(x.dtype if x.dtype.kind == "f" else work, copy=False)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """As ``torch.nn.functional.gelu``: ``x * Phi(x)``, or the tanh approximation."""
    x = np.asarray(x)
    xw = x.astype(_work_dtype(x.dtype), copy=False)
    if approximate == "tanh":
        t = xw * xw
        t *= 0.044715
        t += 1.0
        t *= xw
        t *= _SQRT_2_OVER_PI
        t = np.tanh(t, out=t) if t.ndim else np.tanh(t)
    elif approximate == "none":
        t = erf(xw * _SQRT1_2)
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    t = t + 1.0
    t *= xw
    t *= 0.5
    return np.asarray(t).astype(x.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow: ``exp(-|x|)`` is at most 1."""
    x = np.asarray(x)
    if x.ndim == 0:
        return sigmoid(x.reshape(1)).reshape(())
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)  # e = exp(-|x|) in (0, 1]
    r = e + 1.0
    np.reciprocal(r, out=r)  # 1 / (1 + e): sigmoid(|x|)
    e *= r  # e / (1 + e): sigmoid(-|x|)
    return np.where(x >= 0, r, e)
