"""Two-sample t-tests with p-values from numpy alone.

Why not scipy: the only thing the analysis needs from it is the t distribution's tail,
and that is the regularized incomplete beta function, ``p = I_x(df/2, 1/2)`` with
``x = df / (df + t²)`` (two-sided). Evaluating it with Lentz's continued fraction
(Numerical Recipes §6.4) takes a few dozen vectorised numpy steps, is accurate to ~1e-13
in the small-p branch we care about, and keeps a 100 MB dependency out of the runtime.
``tests/analysis/test_tdist.py`` checks it against scipy when scipy is installed.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

_TINY = 1e-300
_EPS = 1e-14
_MAX_ITER = 500
_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def _log_gamma(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(_lgamma(x), dtype=np.float64)


def _beta_cf(a: NDArray[np.float64], b: NDArray[np.float64], x: NDArray[np.float64]):
    """Continued fraction of I_x(a, b) (modified Lentz), all elements at once."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
    h = d.copy()
    for m in range(1, _MAX_ITER + 1):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < _TINY, _TINY, c)
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / np.where(np.abs(d) < _TINY, _TINY, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < _TINY, _TINY, c)
        delta = d * c
        h *= delta
        if np.all(np.abs(delta - 1.0) < _EPS):
            break
    return h


def betainc(a: ArrayLike, b: ArrayLike, x: ArrayLike) -> NDArray[np.float64]:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    a, b, x = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, x)))
    out = np.where(x <= 0.0, 0.0, 1.0)
    inner = (x > 0.0) & (x < 1.0)
    if not inner.any():
        return out
    ai, bi, xi = a[inner], b[inner], x[inner]
    log_front = (
        _log_gamma(ai + bi) - _log_gamma(ai) - _log_gamma(bi) + ai * np.log(xi) + bi * np.log1p(-xi)
    )
    front = np.exp(log_front)
    direct = xi < (ai + 1.0) / (ai + bi + 2.0)
    res = np.empty_like(xi)
    if direct.any():
        res[direct] = front[direct] * _beta_cf(ai[direct], bi[direct], xi[direct]) / ai[direct]
    flip = ~direct
    if flip.any():
        cf = _beta_cf(bi[flip], ai[flip], 1.0 - xi[flip])
        res[flip] = 1.0 - front[flip] * cf / bi[flip]
    out[inner] = np.clip(res, 0.0, 1.0)
    return out


def t_pvalue(t: ArrayLike, df: ArrayLike) -> NDArray[np.float64]:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom (df may be real).

    ``t = ±inf`` gives 0; ``NaN`` t or ``df <= 0`` gives 1 (no evidence).
    """
    t = np.asarray(t, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    t, df = np.broadcast_arrays(t, df)
    p = np.ones(t.shape, dtype=np.float64)
    ok = (df > 0) & ~np.isnan(t)
    inf = ok & np.isinf(t)
    p[inf] = 0.0
    fin = ok & ~inf
    if fin.any():
        tf, dff = t[fin], df[fin]
        p[fin] = betainc(dff / 2.0, 0.5, dff / (dff + tf * tf))
    return p


def ttest_from_stats(
    mean1: ArrayLike,
    var1: ArrayLike,
    n1: ArrayLike,
    mean2: ArrayLike,
    var2: ArrayLike,
    n2: ArrayLike,
    *,
    equal_var: bool,
) -> NDArray[np.float64]:
    """Two-sided two-sample t-test p-values from segment statistics (vectorised).

    ``var`` are sample variances (ddof=1; pass 0 for a one-point segment). With
    ``equal_var`` the pooled (Student) test, otherwise Welch's test with the
    Welch–Satterthwaite degrees of freedom (needs two or more points on each side,
    otherwise p = 1). A zero standard error means two constant segments: p = 0 when their
    means differ, 1 when they are equal.
    """
    m1, v1, k1, m2, v2, k2 = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (mean1, var1, n1, mean2, var2, n2))
    )
    diff = m2 - m1
    with np.errstate(divide="ignore", invalid="ignore"):
        if equal_var:
            df = k1 + k2 - 2.0
            pooled = ((k1 - 1.0) * v1 + (k2 - 1.0) * v2) / df
            se = np.sqrt(pooled * (1.0 / k1 + 1.0 / k2))
        else:
            a, b = v1 / k1, v2 / k2
            se = np.sqrt(a + b)
            df = (a + b) ** 2 / (a * a / (k1 - 1.0) + b * b / (k2 - 1.0))
            valid = (k1 >= 2) & (k2 >= 2)
            # both segments constant: the Welch df is 0/0; the se == 0 rule below decides
            df = np.where(valid, np.where(se == 0, 1.0, df), 0.0)
        t = diff / se
    p = t_pvalue(np.where(se > 0, t, 0.0), np.where(np.isfinite(df), df, 0.0))
    degenerate = (se == 0) & (df > 0)
    p = np.where(degenerate, np.where(diff != 0, 0.0, 1.0), p)
    return p
