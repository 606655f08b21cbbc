"""Regression verdicts: one row per (profile, test, metric, tags) series of a history.

For each series, over the nights up to ``evaluated_night``:

1. NaN/null values and nights on which the profile ran but the series has no row are
   skipped and counted (``skipped_nights``); the rest are the usable nights.
2. Fewer than ``min_nights`` usable nights → ``'insufficient data'``: never an alarm.
3. Otherwise change points (changepoint.py), on the values with isolated one-night spikes
   replaced by their neighbours' mean (spikes.py), with ``max_pvalue`` and ``min_magnitude =
   CP_MAGNITUDE × min_effect``, so shifts well under the effect we care about are merged
   away rather than hiding an older, larger one behind them. ``CP_MAGNITUDE = 0.8``, not 1:
   a 5 % step measures 5 ± 0.8 %, and at 1 the merge dropped the ones measured under 5 %
   before step 5 could weigh them (bench part 1, 5 % steps at CV ≤ 3 %: recall 0.79 →
   0.98, false alerts unchanged).
4. The verdict is about the latest change point with at least ``MIN_NIGHTS_AFTER`` nights
   on or after it: the nights since then (the current regime) are compared (t-test,
   relative change) with the reference regime, the latest earlier segment of at least
   ``MIN_REGIME_NIGHTS`` nights (``MIN_FIRST_REGIME_NIGHTS`` for the first; none:
   'stable'). Worse by ``min_effect`` or more in the metric's direction with
   p < ``max_pvalue`` → ``'regression'`` (``first_bad_night`` = the first change night
   after the reference from which it is worse), better → ``'improvement'``, else
   ``'stable'``. ``magnitude`` is signed so + is worse whatever
   the direction; ``confidence`` is 1 - p. Both are null for 'stable'.
5. Quiet on noisy series (Issue 15): the t-test's p-value is taken after E-divisive chose
   the split that looks most significant, every night anew, so on 4–10 % noise it passed
   ~1 false alert per 100 quiet nights. A verdict also needs the change to be clear of
   the series' *own* noise: ``robust / se >= MIN_Z`` where ``robust`` is the lower median
   of the current regime's nights (each night's relative change; for two nights, the
   less bad one, so one 3–5× outlier on the newest nights decides nothing) and ``se`` =
   σ·√(1/n_ref + 1/n_cur), σ the largest of the reference's robust night-to-night noise,
   the last ``noise.RECENT_NIGHTS`` nights' (robust and RMS: noise that got louder a few
   nights ago counts now) and the current regime's own spread. The minimum effect is
   checked as "not clearly below": ``magnitude + se >= min_effect``, so a 5 % step that
   measures 4.6 % still counts. ``MIN_Z = 4``: 3.5 let variance changes and drift starts
   through at ~0.5 per 100 quiet nights, 4.5 cost a third of the 10 % steps at CV > 3 %
   (bench/regression_vs_otava.py, part 1).

6. Evidence over nights (cusum.py): when the change points give no verdict, a one-sided
   CUSUM for a worsening of ``min_effect`` against an estimated reference can still say
   'regression' on the night it fires (``first_bad_night`` where the worse level begins,
   ``magnitude`` the mean since then against the reference, ``confidence`` 1 - p of it).
   It finds the small steps on loud series that a regime must otherwise wait out (bench,
   10 % steps at CV > 3 %: recall 0.78 → 0.89; false alerts per 100 quiet nights 0.06-0.16
   → 0.13-0.25). ``cusum_threshold=None``: no CUSUM.
7. The newest nights (recent.py): when neither gives a verdict, the last 3 nights, each
   1.5 σ worse than the median of the 40 nights before them and their mean 3 standard
   errors and 0.8 × min_effect worse, say 'regression' (``first_bad_night`` the first of
   them) for as long as they are; only on series quiet enough for a min_effect step to
   be 1.5 σ a night. Change points and CUSUM report a 5 % step at CV 1-3 % a median 3
   nights after it; with this, 2 (bench). ``recent_nights=False``: without it.

Slow drift is a regression too (a creep of 1 %/night is a leak or a growing table): it
is flagged once its cumulative change is clear of the noise, in practice a few nights
after it passes ``min_effect`` (tests/analysis/test_verdicts.py pins a 1 %/night creep
at 2 % noise to within a week of its reaching 5 %; the bench measures 0.5 %/night).

Why ``MIN_NIGHTS_AFTER = 2``: the pooled t-test will call a single night 11 % off a 3 %
noise series significant, and one bad night is as often a noisy neighbour as a regression.
Two nights in a row cost one night of delay for large steps (a 20 % step is reported the
night after it) and remove the one-outlier alarms; a fresh one-night change point still
shows in ``change_nights``.

Failed or errored nights keep their metric values in the change-point analysis (a failed
night's latency is data, and often the first sign of the regression); only the baseline
excludes them (baseline.py). ``plan_rule_fired`` reports the plan's rule on the same
usable nights as it would run on the evaluated night (plan_rule.py), for comparison.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from nightly_pipeline.analysis._frames import day, group_history
from nightly_pipeline.analysis._tdist import ttest_from_stats
from nightly_pipeline.analysis.baseline import baseline_mask
from nightly_pipeline.analysis.changepoint import detect_change_points_many
from nightly_pipeline.analysis.cusum import THRESHOLD as CUSUM_THRESHOLD
from nightly_pipeline.analysis.cusum import Alarm, worsening_alarm
from nightly_pipeline.analysis.direction import direction_of, worse_sign
from nightly_pipeline.analysis.noise import night_to_night_noise, recent_noise
from nightly_pipeline.analysis.plan_rule import firing_on_last_night, plan_rule
from nightly_pipeline.analysis.recent import recent_worsening
from nightly_pipeline.analysis.spikes import despike

MIN_NIGHTS_AFTER = 2
MIN_REGIME_NIGHTS = 14
MIN_FIRST_REGIME_NIGHTS = 7
MIN_Z = 4.0
CP_MAGNITUDE = 0.8
VERDICT_SCHEMA = {
    "profile": pl.String,
    "test": pl.String,
    "metric": pl.String,
    "tags": pl.String,
    "direction": pl.String,
    "verdict": pl.String,
    "first_bad_night": pl.Date,
    "magnitude": pl.Float64,
    "confidence": pl.Float64,
    "baseline_mean": pl.Float64,
    "latest_value": pl.Float64,
    "nights": pl.Int64,
    "skipped_nights": pl.Int64,
    "plan_rule_fired": pl.Boolean,
    "change_nights": pl.List(pl.Date),
}


def regression_verdicts(
    history: pl.DataFrame,
    *,
    evaluated_night: date | None = None,
    min_effect: float = 0.05,
    max_pvalue: float = 0.001,
    min_nights: int = 8,
    cusum_threshold: float | None = CUSUM_THRESHOLD,
    recent_nights: bool = True,
) -> pl.DataFrame:
    """Verdict per series of ``history`` (columns as in analysis/CONTRACT.md).
    ``cusum_threshold``: the CUSUM's (cusum.py; None: none); ``recent_nights``: the
    newest nights' test (recent.py). Both off: change points alone."""
    g = group_history(history, until=evaluated_night)
    end = day(evaluated_night) if evaluated_night is not None else None
    ran = _nights_each_profile_ran(g)
    series = []
    for i, key in enumerate(g.keys.iter_rows()):
        sl = slice(int(g.starts[i]), int(g.ends[i]))
        nights, values, passed = g.night[sl], g.value[sl], g.passed[sl]
        usable = np.isfinite(values)
        last = end if end is not None else int(ran[key[0]][-1])
        profile_nights = ran[key[0]]
        expected = np.count_nonzero((profile_nights >= nights[0]) & (profile_nights <= last))
        absent = max(0, expected - nights.size)
        series.append(
            _Series(
                key=key,
                direction=direction_of(key[2]),
                nights=nights[usable],
                values=values[usable],
                smooth=despike(values[usable]),
                passed=passed[usable],
                skipped=int(np.count_nonzero(~usable)) + absent,
            )
        )
    enough = [s for s in series if s.values.size >= min_nights]
    found = detect_change_points_many(
        [s.smooth for s in enough],
        max_pvalue=max_pvalue,
        min_magnitude=CP_MAGNITUDE * min_effect,
    )
    for s, cps in zip(enough, found, strict=True):
        s.change_points = cps
    rows = [
        _verdict(s, min_nights, min_effect, max_pvalue, cusum_threshold, recent_nights)
        for s in series
    ]
    int_schema = {
        **VERDICT_SCHEMA,
        "first_bad_night": pl.Int32,
        "change_nights": pl.List(pl.Int32),
    }
    return pl.DataFrame(rows, schema=int_schema, orient="row").with_columns(
        pl.col("first_bad_night").cast(pl.Date),
        pl.col("change_nights").cast(pl.List(pl.Date)),
    )


class _Series:
    """One series' usable nights: raw values, and ``smooth`` (spikes removed) to analyse."""

    __slots__ = (
        "change_points",
        "direction",
        "key",
        "nights",
        "passed",
        "skipped",
        "smooth",
        "values",
    )

    def __init__(self, key, direction, nights, values, smooth, passed, skipped) -> None:
        self.key = key
        self.direction = direction
        self.nights = nights
        self.values = values
        self.smooth = smooth
        self.passed = passed
        self.skipped = skipped
        self.change_points = []


def _nights_each_profile_ran(g) -> dict[str, np.ndarray]:
    profiles = g.keys["profile"].to_list()
    nights: dict[str, list[np.ndarray]] = {}
    for i, p in enumerate(profiles):
        nights.setdefault(p, []).append(g.night[int(g.starts[i]) : int(g.ends[i])])
    return {p: np.unique(np.concatenate(parts)) for p, parts in nights.items()}


def _verdict(
    s: _Series,
    min_nights: int,
    min_effect: float,
    max_pvalue: float,
    cusum: float | None,
    recent: bool,
) -> tuple:
    n = s.values.size
    change_nights = [int(s.nights[c.index]) for c in s.change_points]
    fired = firing_on_last_night(plan_rule(s.values.tolist(), s.direction))
    verdict, first_bad, magnitude, confidence = "stable", None, None, None
    if n < min_nights:
        verdict = "insufficient data"
    else:
        bounds = [c.index for c in s.change_points if n - c.index >= MIN_NIGHTS_AFTER]
        if bounds:
            worse, p, first, robust, se = _against_reference(s, bounds, min_effect)
            clear = p < max_pvalue and abs(robust) >= MIN_Z * se
            if clear and worse + se >= min_effect and robust > 0:
                verdict, first_bad = "regression", int(s.nights[first])
            elif clear and worse - se <= -min_effect and robust < 0:
                verdict = "improvement"
            if verdict != "stable":
                magnitude, confidence = worse, 1.0 - p
        alarm = _alarm(s, min_effect, cusum, recent) if verdict == "stable" else None
        if alarm is not None:
            verdict, first_bad = "regression", int(s.nights[alarm.start])
            magnitude, confidence = alarm.magnitude, alarm.confidence
    mask = baseline_mask(s.nights, s.passed, change_nights, first_bad)
    baseline_mean = float(s.smooth[mask].mean()) if mask.any() else None
    latest_value = float(s.values[-1]) if n else None
    return (
        *s.key,
        s.direction,
        verdict,
        first_bad,
        magnitude,
        confidence,
        baseline_mean,
        latest_value,
        n,
        s.skipped,
        fired,
        change_nights,
    )


def _alarm(s: _Series, min_effect: float, cusum: float | None, recent: bool) -> Alarm | None:
    """Where the change points see no regression: the CUSUM's alarm, else the newest
    nights' (steps 6 and 7)."""
    sign = worse_sign(s.direction)
    alarm = worsening_alarm(s.values, sign, min_effect, cusum) if cusum is not None else None
    if alarm is None and recent:
        alarm = recent_worsening(s.values, sign, min_effect)
    return alarm


def _against_reference(s: _Series, bounds: list[int], min_effect: float):
    """Current regime vs the reference regime: (+ = worse magnitude, p-value, first bad index).

    The current regime is ``values[bounds[-1]:]``. The reference is the latest earlier
    segment lasting ``MIN_REGIME_NIGHTS`` or more; shorter segments in between are
    excursions, and without such a segment there is no established level to regress from
    (a 2-night first segment is not one). Comparing with the segment right before instead
    would turn the end of a 3-night dip into a "regression" that stays the latest change
    point, and alarms, for months. ``MIN_REGIME_NIGHTS = 14``, not 7: on 2–4 % noise an
    11-night segment a few % low by chance became the reference, and the ordinary nights
    after it a "5.6 % regression" for weeks (bench part 1, variance case, 60 series:
    0.38 → 0.17 false alerts per 100 quiet nights; steps unchanged). The first segment
    (no change point before it) needs only ``MIN_FIRST_REGIME_NIGHTS = 7``: it is not an
    excursion from anything, and a young series must not wait two weeks for its first
    verdict (tests/test_evaluate.py: a step after 11 nights). The first bad index
    is the first boundary after the reference from which the level is worse than the
    reference by ``min_effect``.
    """
    edges = [0, *bounds, s.smooth.size]
    refs = [
        j
        for j in range(len(edges) - 2)
        if edges[j + 1] - edges[j] >= (MIN_FIRST_REGIME_NIGHTS if j == 0 else MIN_REGIME_NIGHTS)
    ]
    if not refs:
        return 0.0, 1.0, bounds[-1], 0.0, np.inf
    ref = refs[-1]
    before = s.smooth[edges[ref] : edges[ref + 1]]
    after = s.smooth[bounds[-1] :]
    p = float(
        ttest_from_stats(
            before.mean(),
            before.var(ddof=1) if before.size > 1 else 0.0,
            before.size,
            after.mean(),
            after.var(ddof=1) if after.size > 1 else 0.0,
            after.size,
            equal_var=True,
        )
    )
    sign = worse_sign(s.direction)
    base = float(before.mean())

    def worse_than_reference(segment: np.ndarray) -> float:
        if base == 0:
            return sign * float(np.copysign(np.inf, segment.mean())) if segment.mean() else 0.0
        return sign * (float(segment.mean()) - base) / abs(base)

    first = bounds[-1]
    for k in range(ref + 1, len(edges) - 1):
        if worse_than_reference(s.smooth[edges[k] : edges[k + 1]]) >= min_effect:
            first = edges[k]
            break
    worse = worse_than_reference(after)
    if base == 0:
        return worse, p, first, worse, 0.0
    nightly = np.sort(sign * (after - base) / abs(base))  # each night's relative worsening
    k = (after.size - 1) // 2  # the lower median, towards zero: one odd night cannot decide
    robust = float(nightly[k] if worse >= 0 else nightly[after.size - 1 - k])
    spread = float(after.std(ddof=1))  # the current regime's own: louder lately, higher bar
    noise = max(night_to_night_noise(before), recent_noise(s.smooth, bounds[-1]), spread)
    sigma = noise / abs(base)
    se = sigma * float(np.sqrt(1.0 / before.size + 1.0 / after.size))
    return worse, p, first, robust, se
