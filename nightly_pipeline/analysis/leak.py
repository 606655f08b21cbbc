"""Memory-leak verdict for one run's RSS samples.

A soak test's memory is "stable" when RSS stops growing after warm-up. We fit a line to
the RSS samples after ``warmup_s`` and call it a leak when the fitted growth over the
measured span exceeds ``max_growth_pct`` (the seed's "memory growth < 5 %").

The line is Theil–Sen (median of pairwise slopes, intercept = median residual), not least
squares: one GC pause or sampling glitch that reports RSS 30 % off moves a least-squares
slope over a short soak noticeably; it moves the median of slopes by almost nothing
(breakdown point ~29 %). Pairs are taken over at most ``_MAX_POINTS`` evenly spaced
samples (a 30 min soak at 1 Hz has 1,800: 1.6 M pairs would cost ~50 ms; 200 points give
20 k pairs, well under a millisecond, and the same slope within noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_MAX_POINTS = 200
_MIN_POINTS = 3


@dataclass(frozen=True)
class LeakVerdict:
    """``slope_mb_per_min``: fitted RSS slope after warm-up; ``growth_pct``: fitted RSS at the
    last sample vs the first after warm-up, in %; NaN for both when there are too few samples.
    """

    slope_mb_per_min: float
    growth_pct: float
    leaking: bool
    detail: str


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Median-of-pairwise-slopes line ``y = slope * x + intercept`` (x strictly increasing
    is not required; pairs with equal x are skipped)."""
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    slope = float(np.median((y[j] - y[i])[keep] / dx[keep])) if keep.any() else 0.0
    return slope, float(np.median(y - slope * x))


def leak_verdict(
    seconds: Sequence[float],
    rss_mb: Sequence[float],
    *,
    warmup_s: float,
    max_growth_pct: float,
) -> LeakVerdict:
    """Robust RSS slope and growth after warm-up; ``leaking`` when growth > max_growth_pct."""
    t = np.asarray(seconds, dtype=np.float64)
    y = np.asarray(rss_mb, dtype=np.float64)
    if t.shape != y.shape:
        raise ValueError(f"seconds and rss_mb differ in length: {t.size} vs {y.size}")
    keep = np.isfinite(t) & np.isfinite(y) & (t >= warmup_s)
    t, y = t[keep], y[keep]
    if t.size < _MIN_POINTS or t.max() == t.min():
        return LeakVerdict(
            slope_mb_per_min=float("nan"),
            growth_pct=float("nan"),
            leaking=False,
            detail=f"{t.size} RSS samples after {warmup_s:g} s warm-up: too few to fit",
        )
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    if t.size > _MAX_POINTS:
        pick = np.unique(np.linspace(0, t.size - 1, _MAX_POINTS).round().astype(np.int64))
        ts, ys = t[pick], y[pick]
    else:
        ts, ys = t, y
    slope_per_s, intercept = theil_sen(ts, ys)
    start, end = intercept + slope_per_s * t[0], intercept + slope_per_s * t[-1]
    growth = (end - start) / abs(start) * 100.0 if start != 0 else float("nan")
    leaking = bool(growth > max_growth_pct)
    minutes = (t[-1] - t[0]) / 60.0
    detail = (
        f"RSS {start:.1f} → {end:.1f} MB fitted over {minutes:.1f} min after "
        f"{warmup_s:g} s warm-up: {slope_per_s * 60:+.3f} MB/min, {growth:+.1f} % "
        f"({'>' if leaking else '<='} {max_growth_pct:g} %)"
    )
    return LeakVerdict(
        slope_mb_per_min=slope_per_s * 60.0, growth_pct=growth, leaking=leaking, detail=detail
    )
