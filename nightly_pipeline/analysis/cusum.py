"""Evidence accumulated over nights: a one-sided CUSUM for a worsening of ``min_effect``.

The change-point verdicts judge a series regime by regime, so a 5-10 % step on a series
whose nights vary by 3-10 % waits until the new regime alone is clear of the noise (bench:
10 % steps at CV > 3 % found 0.78 of the time). A CUSUM adds up each night's evidence
instead, and is the fastest detector of a shift of known size at a given false-alarm rate
(Page 1954; Lorden 1971); bench/regression_vs_otava.py's ``oracle`` is one told the truth.

This one is told nothing: each night is compared with a reference estimated from the
``REFERENCE_NIGHTS`` usable nights before the current excursion (their median, and the
robust night-to-night σ of ``noise``), frozen while the excursion lasts (the sum is
above zero), so a step does not become its own reference. Each night adds
``z - k``, z = how much worse than the reference in σ, clipped at ±``Z_CLIP`` (one 3-5×
outlier adds at most 3), k = half the minimum effect in σ; the sum never goes below zero.
Past ``THRESHOLD`` it alarms and restarts from zero, with a reference of the 40 nights
before the next excursion.

The alarm is the verdict of the night it fires (and ``first_bad_night`` keeps it to one
alert, evaluate.py); the nights after, the sum gathers evidence anew, and a level that
stays worse fires again (a 10 % step at CV 5 % about every 10 nights) or is by then a
regime the change points judge. Holding the alarm while the restarted sum stays above
zero cost false alerts: a false alarm on a series a little worse than its reference held
for weeks (bench, quiet / drift: 0.14 / 0.25 → 0.36 / 0.89 per 100 quiet nights).

``THRESHOLD = 14``, ``REFERENCE_NIGHTS = 40``: with the change-point verdicts beside it,
the bench's seven hard cases stay within 0.3 false alerts per 100 quiet nights (numbers
in bench/README.md). A reference of fewer than ``MIN_REFERENCE_NIGHTS`` nights, a level
of zero (no relative effect) or a noise so low that ``k`` exceeds the clip (CV under
~0.8 %: the change points see those steps at once) gives no alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import erfc, isfinite, sqrt

import numpy as np

from nightly_pipeline.analysis.noise import DIFF_MAD_TO_SIGMA, night_to_night_noise

THRESHOLD = 14.0
REFERENCE_NIGHTS = 40
MIN_REFERENCE_NIGHTS = 14
Z_CLIP = 3.0


@dataclass(frozen=True)
class Alarm:
    """A worsening the sum found on the last night."""

    start: int  # index of the first worse night
    magnitude: float  # the excursion's mean, relative to the reference level (+ = worse)
    confidence: float  # 1 - p of that mean against the reference's level and noise


def worsening_alarm(
    values: np.ndarray, worse_sign: float, min_effect: float, threshold: float = THRESHOLD
) -> Alarm | None:
    """The alarm the last of ``values`` (usable nights, oldest first) fires, if it does.
    ``worse_sign`` is +1 when up is worse (latency), -1 when down is (throughput)."""
    levels, sigmas = _references(values)
    x, level, sigma = values.tolist(), levels.tolist(), sigmas.tolist()  # floats: fast scalars
    total, start = 0.0, -1
    fired: tuple[int, float, float] | None = None  # the excursion's start, level, sigma
    for night in range(MIN_REFERENCE_NIGHTS, len(x)):
        fired = None
        cut = start if start >= 0 else night
        ref_level, ref_sigma = level[cut], sigma[cut]
        if not (isfinite(ref_level) and ref_level != 0 and ref_sigma > 0):
            total, start = 0.0, -1
            continue
        z = min(Z_CLIP, max(-Z_CLIP, worse_sign * (x[night] - ref_level) / ref_sigma))
        total = max(0.0, total + z - min_effect * abs(ref_level) / (2.0 * ref_sigma))
        if total == 0.0:
            start = -1
            continue
        if start < 0:
            start = night
        if total > threshold:
            fired = (start, ref_level, ref_sigma)
            total, start = 0.0, -1
    if fired is None:
        return None
    first, ref_level, ref_sigma = fired
    reference = values[max(0, first - REFERENCE_NIGHTS) : first]
    start = first + _split(reference, values[first:], worse_sign)
    return excursion_alarm(values[start:], start, ref_level, ref_sigma, worse_sign)


def _split(reference: np.ndarray, excursion: np.ndarray, worse_sign: float) -> int:
    """Where in the excursion the worse level begins: the split of reference + excursion
    whose later part is the most significantly worse than the earlier (two-sample z, equal
    noise). The sum's own start is the last night it was at zero, which a reference
    estimated a little too good puts weeks before a step (nights a little worse than it
    keep the sum above zero without alarming)."""
    x = np.concatenate([reference, excursion])
    n, m = x.size, reference.size
    head = np.cumsum(x)[m - 1 : n - 1]  # sums of x[:j] for j = m .. n-1
    before = np.arange(m, n, dtype=np.float64)
    after = n - before
    gap = (x.sum() - head) / after - head / before
    score = worse_sign * gap * np.sqrt(before * after / n)
    return int(np.argmax(score))


def _references(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each night i, the level (median) and noise of the ``REFERENCE_NIGHTS`` nights
    before it; NaN where fewer than ``MIN_REFERENCE_NIGHTS``. Computed once for every
    night (a sliding window), as a night's reference is either its own or its
    excursion's first night's."""
    n = values.size
    level, sigma = np.full(n, np.nan), np.zeros(n)
    for i in range(MIN_REFERENCE_NIGHTS, min(n, REFERENCE_NIGHTS)):
        level[i], sigma[i] = np.median(values[:i]), night_to_night_noise(values[:i])
    if n > REFERENCE_NIGHTS:
        windows = np.lib.stride_tricks.sliding_window_view(values, REFERENCE_NIGHTS)[:-1]
        level[REFERENCE_NIGHTS:] = np.median(windows, axis=1)
        steps = np.abs(np.diff(windows, axis=1))
        sigma[REFERENCE_NIGHTS:] = np.median(steps, axis=1) * DIFF_MAD_TO_SIGMA
    return level, sigma


def excursion_alarm(
    excursion: np.ndarray, start: int, level: float, sigma: float, worse_sign: float
) -> Alarm:
    """The alarm for the nights ``excursion`` (from index ``start``) against a reference
    ``level`` with night-to-night noise ``sigma``: its mean's relative worsening and 1 - p."""
    worse = worse_sign * (float(excursion.mean()) - level)
    z = worse / (sigma / sqrt(excursion.size))
    return Alarm(start, worse / abs(level), 1.0 - 0.5 * erfc(z / sqrt(2.0)))
