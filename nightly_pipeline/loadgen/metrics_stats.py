"""Metric kinds and the flat aggregation map (``{"p(95)": 87.1, "avg": 50.0}``).

Keys per kind (k6 names):

=========  ==========================================================
trend      count, avg, min, med, max, p(90), p(95), p(99), any p(N)
counter    count (sum of the values), rate (count per second)
rate       rate (passes / total), passes, fails
gauge      value (the latest sample), min, max
=========  ==========================================================

A kind with no samples gives NaN for every value except counts (0) and a Counter's
rate (0): "no data" must never look like a good number.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

TREND = "trend"
COUNTER = "counter"
RATE = "rate"
GAUGE = "gauge"
KINDS = (TREND, COUNTER, RATE, GAUGE)
_CANONICAL = {k: k for k in KINDS}
NAN = float("nan")

_PCT_KEY = re.compile(r"p\(\s*(\d+(?:\.\d*)?|\.\d+)\s*\)")


def canonical_kind(kind: str) -> str:
    try:
        return _CANONICAL[kind]
    except KeyError:
        raise ValueError(f"unknown metric kind {kind!r}; expected one of {KINDS}") from None


def percentile_key(p: float) -> str:
    """`95.0` → ``"p(95)"``, `99.9` → ``"p(99.9)"`` (k6 spelling)."""
    return f"p({int(p)})" if float(p).is_integer() else f"p({p!r})"


def parse_percentile_key(key: str) -> float | None:
    m = _PCT_KEY.fullmatch(key)
    if m is None:
        return None
    p = float(m.group(1))
    return p if 0.0 <= p <= 100.0 else None


class Stats(dict[str, float]):
    """A flat aggregation map whose ``p(N)`` entries are computed on first access.

    ``stats["p(99.9)"]`` works for any N; ``in`` and ``.get`` only see what is already
    present (the defaults listed in the module docstring).
    """

    __slots__ = ("_pct",)

    def __init__(self, values: dict[str, float], pct: Callable[[float], float] | None = None):
        super().__init__(values)
        self._pct = pct

    def __missing__(self, key: str) -> float:
        p = parse_percentile_key(key) if self._pct is not None else None
        if p is None:
            raise KeyError(key)
        value = self._pct(p)  # type: ignore[misc]
        self[key] = value
        return value

    def percentile(self, p: float) -> float:
        return self[percentile_key(p)]


def trend_stats(
    n: int, sum_ns: int, vmin: float, vmax: float, pct: Callable[[float], float] | None
) -> Stats:
    if not n or pct is None:
        return Stats({"count": 0, "avg": NAN, "min": NAN, "med": NAN, "max": NAN}, None)
    values = {"count": n, "avg": sum_ns / n / 1e6, "min": vmin, "max": vmax}
    values["med"] = pct(50.0)
    for p in (90.0, 95.0, 99.0):
        values[percentile_key(p)] = pct(p)
    return Stats(values, pct)


def counter_stats(total: float, duration_s: float) -> Stats:
    rate = total / duration_s if duration_s > 0 else (0.0 if total == 0 else math.inf)
    return Stats({"count": total, "rate": rate})


def rate_stats(n: int, passes: int) -> Stats:
    return Stats({"rate": passes / n if n else NAN, "passes": passes, "fails": n - passes})


def gauge_stats(n: int, last: float, vmin: float, vmax: float) -> Stats:
    if not n:
        return Stats({"value": NAN, "min": NAN, "max": NAN})
    return Stats({"value": last, "min": vmin, "max": vmax})


def empty_stats(kind: str) -> Stats:
    """The map of a metric of `kind` that has no samples."""
    if kind == TREND:
        return trend_stats(0, 0, NAN, NAN, None)
    if kind == COUNTER:
        return counter_stats(0, 1.0)
    if kind == RATE:
        return rate_stats(0, 0)
    return gauge_stats(0, NAN, NAN, NAN)
