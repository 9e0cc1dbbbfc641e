"""Regenerate the coefficient tables of ``mithril_numpy/special.py`` (needs mpmath).

Both tables are Chebyshev interpolants computed at 50 significant digits and
converted to the power basis of the mapped variable ``s`` in [-1, 1]:

* ``ERF_SMALL``: erf(x) / x as a polynomial of s = 2 x^2 - 1, for |x| < 1;
* ``ERFC_LARGE``: x exp(x^2) erfc(x) as a polynomial of s = 2.4 / x - 1.4
  (1 / x mapped from [1/6, 1]), for 1 <= |x| < 6.

Degrees 12 and 22 reach float64 rounding (about 1e-16 absolute); the ``_F32``
tables, of degrees 5 and 8, reach float32 rounding.

Run ``python tools/fit_erf.py`` and paste the output into special.py.
"""

from __future__ import annotations

from collections.abc import Callable

import mpmath as mp

mp.mp.dps = 50


def chebyshev_power_coefficients(f: Callable[[mp.mpf], mp.mpf], a: mp.mpf, b: mp.mpf, degree: int) -> list[float]:
    """Interpolate ``f`` on [a, b] at Chebyshev nodes; power coefficients in the mapped variable."""
    n = degree + 1
    nodes = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / n) for k in range(n)]
    values = [f((b - a) / 2 * s + (a + b) / 2) for s in nodes]
    cheb = [
        2 * mp.fsum(values[k] * mp.cos(mp.pi * j * (k + mp.mpf(1) / 2) / n) for k in range(n)) / n for j in range(n)
    ]
    cheb[0] /= 2
    basis = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]  # T_0, T_1 in the power basis
    for _ in range(2, n):
        t = [mp.mpf(0)] + [2 * v for v in basis[-1]]
        for i, v in enumerate(basis[-2]):
            t[i] -= v
        basis.append(t)
    power = [mp.mpf(0)] * n
    for c, t in zip(cheb, basis):
        for i, v in enumerate(t):
            power[i] += c * v
    return [float(p) for p in power]


def erf_over_x(t: mp.mpf) -> mp.mpf:
    return 2 / mp.sqrt(mp.pi) if t == 0 else mp.erf(mp.sqrt(t)) / mp.sqrt(t)


def scaled_erfc(u: mp.mpf) -> mp.mpf:
    x = 1 / u
    return x * mp.exp(x * x) * mp.erfc(x)


def main() -> None:
    tables = {}
    for suffix, small, large in (("", 12, 22), ("_F32", 5, 8)):
        tables["ERF_SMALL" + suffix] = chebyshev_power_coefficients(erf_over_x, mp.mpf(0), mp.mpf(1), small)
        tables["ERFC_LARGE" + suffix] = chebyshev_power_coefficients(scaled_erfc, mp.mpf(1) / 6, mp.mpf(1), large)
    for name, coefficients in tables.items():
        print(f"{name} = (")
        for c in coefficients:
            print(f"    {c!r},")
        print(")")


if __name__ == "__main__":
    main()
