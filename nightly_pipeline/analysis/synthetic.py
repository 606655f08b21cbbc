"""Seeded synthetic history frames with known regressions, for tests and the bench.

A series is ``level(night) × (1 + noise × N(0, 1))`` where the level starts at ``base`` and
moves by relative steps and linear drifts; an outlier multiplies or divides one night by
``1 + outlier_size`` (a fixed size, or one drawn per outlier from a ``(low, high)`` range);
a ``NoiseChange`` makes the noise louder or quieter from a night on. Sizes and signs are
in the metric's own terms:
``sign=+1`` is *worse* (latency up, throughput down), ``-1`` better, so a truth row can be
compared directly with a verdict's ``magnitude`` (+ = worse). On top: outliers (one night
off by ``outlier_size``), NaN values, absent rows, and failed nights (per test).

``generate`` returns the history frame (analysis/CONTRACT.md columns) and a truth frame:
profile, test, metric, tags, kind ('step' | 'drift' | 'noise' | 'outlier' | 'nan' |
'absent' | 'failed'), night, index (night number), size, sign. ``history`` is the frame
alone.

``hard_case`` builds the harder mixes of Issue 15 (the verdict bench and its tests use
them): per-series noise of 1–10 %, about 3 % missing nights, and one hazard per case —
isolated 3–5× outliers, a variance change, a slow drift, or a worse step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import polars as pl

from nightly_pipeline.analysis.direction import Direction, direction_of

HISTORY_SCHEMA = {
    "night": pl.Date,
    "profile": pl.String,
    "test": pl.String,
    "metric": pl.String,
    "tags": pl.String,
    "value": pl.Float64,
    "unit": pl.String,
    "status": pl.String,
}
TRUTH_SCHEMA = {
    "profile": pl.String,
    "test": pl.String,
    "metric": pl.String,
    "tags": pl.String,
    "kind": pl.String,
    "night": pl.Date,
    "index": pl.Int64,
    "size": pl.Float64,
    "sign": pl.Int64,
}

TESTS = (
    "01_message_soak",
    "02_conversation_crud",
    "03_participant_invalidation",
    "04_mixed_ws_http",
    "05_large_payload",
    "06_sustained_login",
    "07_storage_multi_adapter",
    "08_consumer_resilience",
    "09_redis_partition",
    "10_pool_exhaustion",
    "11_cascading_failure",
    "12_multi_user_conversation",
    "13_migration_under_load",
    "14_ws_longevity",
    "15_baseline_snapshot",
)
METRICS: tuple[tuple[str, str, float], ...] = (  # name, unit, typical value
    ("http_req_duration.p50", "ms", 20.0),
    ("http_req_duration.p95", "ms", 45.0),
    ("http_req_duration.p99", "ms", 80.0),
    ("http_req_duration.avg", "ms", 25.0),
    ("http_req_waiting.p95", "ms", 40.0),
    ("http_reqs.rate", "1/s", 500.0),
    ("http_reqs.count", "count", 900_000.0),
    ("http_req_failed.rate", "ratio", 0.002),
    ("iterations.rate", "1/s", 500.0),
    ("dropped_iterations.count", "count", 50.0),
    ("engine.scheduling_lag.p99", "ms", 2.0),
    ("messaging_dispatch_lag_seconds.p95", "s", 0.05),
    ("messaging_consumer_lag_seconds.max", "s", 0.3),
    ("messaging_consumer_delivered_total.count", "count", 900_000.0),
    ("cache.hit_ratio", "ratio", 0.92),
    ("resources.rss_mb.max", "MB", 180.0),
    ("resources.rss_mb.growth_pct", "%", 2.0),
    ("resources.cpu_pct.avg", "%", 45.0),
    ("storage_retries_total.count", "count", 30.0),
    ("ws_frame_sent_total.count", "count", 100_000.0),
)


@dataclass(frozen=True)
class Step:
    """From ``night`` on, the level is ``size`` (relative) worse (sign +1) or better (-1)."""

    night: int
    size: float
    sign: int = 1


@dataclass(frozen=True)
class Drift:
    """From ``start`` to ``end`` (default: the last night), the level moves by ``per_night``
    (relative to the base) each night, worse (sign +1) or better (-1); it then holds."""

    start: int
    per_night: float
    sign: int = 1
    end: int | None = None


@dataclass(frozen=True)
class NoiseChange:
    """From ``night`` on, the relative noise (coefficient of variation) is ``noise``."""

    night: int
    noise: float


@dataclass(frozen=True)
class SeriesSpec:
    test: str
    metric: str
    base: float = 100.0
    unit: str = ""
    noise: float = 0.03
    tags: str = "{}"
    steps: tuple[Step, ...] = ()
    drifts: tuple[Drift, ...] = ()
    noise_changes: tuple[NoiseChange, ...] = ()


def noise_level(nights: int, noise: float, changes: Sequence[NoiseChange]) -> np.ndarray:
    """Relative noise of each night: ``noise``, then each change's from its night on."""
    out = np.full(nights, noise)
    for c in sorted(changes, key=lambda c: c.night):
        out[max(c.night, 0) :] = c.noise
    return out


def level(
    nights: int, base: float, direction: Direction, steps: Sequence[Step], drifts: Sequence[Drift]
) -> np.ndarray:
    """Noise-free level of a series (steps multiply, drifts add relative to the base)."""
    worse = 1.0 if direction == "lower" else -1.0
    night = np.arange(nights)
    factor = np.ones(nights)
    for s in steps:
        factor = np.where(night >= s.night, factor * (1.0 + worse * s.sign * s.size), factor)
    drift = np.zeros(nights)
    for d in drifts:
        end = nights - 1 if d.end is None else d.end
        drift += worse * d.sign * d.per_night * np.clip(night - d.start, 0, end - d.start)
    return base * factor * (1.0 + drift)


def values(
    seed: int,
    nights: int,
    *,
    noise: float = 0.03,
    steps: Sequence[Step] = (),
    drifts: Sequence[Drift] = (),
    direction: Direction = "lower",
    base: float = 100.0,
) -> np.ndarray:
    """One series as a numpy array (for detector tests that need no frame)."""
    rng = np.random.default_rng(seed)
    lvl = level(nights, base, direction, steps, drifts)
    return lvl * (1.0 + noise * rng.standard_normal(nights))


def default_series(tests: int = 15, metrics: int = 20, *, noise: float = 0.03) -> list[SeriesSpec]:
    """``tests × metrics`` plausible series (real test and k6/testbed metric names), flat."""
    if not (1 <= tests <= len(TESTS) and 1 <= metrics <= len(METRICS)):
        raise ValueError(f"at most {len(TESTS)} tests and {len(METRICS)} metrics")
    return [
        SeriesSpec(test=t, metric=m, base=b, unit=u, noise=noise)
        for t in TESTS[:tests]
        for m, u, b in METRICS[:metrics]
    ]


def generate(
    seed: int,
    nights: int,
    series: Sequence[SeriesSpec] | None = None,
    *,
    profile: str = "nightly",
    start: date = date(2025, 1, 1),
    nan_rate: float = 0.0,
    absent_rate: float = 0.0,
    outlier_rate: float = 0.0,
    outlier_size: float | tuple[float, float] = 0.5,
    failed_rate: float = 0.0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """History frame and truth frame (see the module docstring); same seed, same frames."""
    rng = np.random.default_rng(seed)
    specs = list(series) if series is not None else default_series()
    days = [start + timedelta(days=i) for i in range(nights)]
    failed = {t: rng.random(nights) < failed_rate for t in dict.fromkeys(s.test for s in specs)}
    cols: dict[str, list] = {k: [] for k in HISTORY_SCHEMA}
    truth: list[tuple] = []

    def note(spec: SeriesSpec, kind: str, i: int, size: float = 0.0, sign: int = 0) -> None:
        truth.append((profile, spec.test, spec.metric, spec.tags, kind, days[i], i, size, sign))

    for t, flags in failed.items():
        for i in np.flatnonzero(flags).tolist():
            truth.append((profile, t, None, None, "failed", days[i], i, 0.0, 0))
    for spec in specs:
        direction = direction_of(spec.metric)
        v = level(nights, spec.base, direction, spec.steps, spec.drifts)
        noise = noise_level(nights, spec.noise, spec.noise_changes)
        v = v * (1.0 + noise * rng.standard_normal(nights))
        for s in spec.steps:
            if 0 <= s.night < nights:
                note(spec, "step", s.night, s.size, s.sign)
        for d in spec.drifts:
            if 0 <= d.start < nights:
                note(spec, "drift", d.start, d.per_night, d.sign)
        for c in spec.noise_changes:
            if 0 <= c.night < nights:
                note(spec, "noise", c.night, c.noise)
        outlier = rng.random(nights) < outlier_rate
        signs = rng.choice((-1, 1), size=nights)
        worse = 1 if direction == "lower" else -1
        if isinstance(outlier_size, tuple):  # drawn only then: fixed sizes keep old seeds
            sizes = rng.uniform(*outlier_size, size=nights)
        else:
            sizes = np.full(nights, float(outlier_size))
        v = np.where(outlier, v * (1.0 + sizes) ** signs, v)  # ×(1+s) or ÷(1+s)
        for i in np.flatnonzero(outlier).tolist():
            note(spec, "outlier", i, float(sizes[i]), int(signs[i]) * worse)
        nan = rng.random(nights) < nan_rate
        absent = (rng.random(nights) < absent_rate) & ~nan
        v = np.where(nan, np.nan, v)
        for i in np.flatnonzero(nan).tolist():
            note(spec, "nan", i)
        for i in np.flatnonzero(absent).tolist():
            note(spec, "absent", i)
        keep = np.flatnonzero(~absent)
        status = np.where(failed[spec.test], "failed", "passed")
        cols["night"] += [days[i] for i in keep.tolist()]
        cols["value"] += v[keep].tolist()
        cols["status"] += status[keep].tolist()
        for key, val in (
            ("profile", profile),
            ("test", spec.test),
            ("metric", spec.metric),
            ("tags", spec.tags),
            ("unit", spec.unit),
        ):
            cols[key] += [val] * keep.size
    frame = pl.DataFrame(cols, schema=HISTORY_SCHEMA)
    truth_frame = pl.DataFrame(truth, schema=TRUTH_SCHEMA, orient="row")
    return frame, truth_frame


def history(seed: int, nights: int, **kwargs) -> pl.DataFrame:
    """The history frame of ``generate(seed, nights, **kwargs)``."""
    return generate(seed, nights, **kwargs)[0]


def with_steps(specs: Sequence[SeriesSpec], steps: Sequence[Step]) -> list[SeriesSpec]:
    """The same series, each with ``steps`` added (handy for the bench)."""
    return [replace(s, steps=(*s.steps, *steps)) for s in specs]


HARD_CASES = ("quiet", "outliers", "variance", "drift", "step5", "step10", "step20")
"""``hard_case`` names: the hazards of Issue 15, one per case, over the same noisy base."""
HARD_NOISE = (0.01, 0.10)
HARD_MISSING = 0.03
HARD_OUTLIER_RATE = 0.03
HARD_OUTLIER_SIZE = (2.0, 4.0)  # the value ×3..×5 (or ÷3..÷5)
HARD_DRIFT = 0.005  # per night: slow, 10 % after 20 nights


def hard_case(
    case: str, seed: int, count: int = 100, nights: int = 100, *, profile: str = "nightly"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``count`` series of one hard ``case`` (``HARD_CASES``): history and truth frames."""
    outliers = HARD_OUTLIER_RATE if case == "outliers" else 0.0
    return generate(
        seed,
        nights,
        hard_specs(case, seed, count, nights),
        profile=profile,
        absent_rate=HARD_MISSING,
        outlier_rate=outliers,
        outlier_size=HARD_OUTLIER_SIZE,
    )


def hard_specs(case: str, seed: int, count: int = 100, nights: int = 100) -> list[SeriesSpec]:
    """The series of ``hard_case`` (tests ``s0000``…), without the outliers and gaps.

    Every case: half latency-like (up is worse), half throughput-like (down is worse),
    noise log-uniform in ``HARD_NOISE`` per series, ``HARD_MISSING`` of nights absent.
    The hazard starts at a random night in ``[0.4, 0.85) × nights``:

    - ``quiet``: nothing else;
    - ``outliers``: ``HARD_OUTLIER_RATE`` of nights ×3–5 or ÷3–5, at any night;
    - ``variance``: the noise is multiplied by 2–3 (capped at 15 %) or divided by 2–3;
    - ``drift``: a worse drift of ``HARD_DRIFT`` per night to the last night;
    - ``stepN``: a worse step of N %.
    """
    if case not in HARD_CASES:
        raise ValueError(f"unknown case {case!r}: choose one of {', '.join(HARD_CASES)}")
    rng = np.random.default_rng([seed, HARD_CASES.index(case)])
    lo, hi = np.log(HARD_NOISE[0]), np.log(HARD_NOISE[1])
    specs = []
    for i in range(count):
        metric, unit, base = METRICS[1] if i % 2 == 0 else METRICS[5]  # p95 / reqs.rate
        noise = float(np.exp(rng.uniform(lo, hi)))
        at = int(rng.integers(int(0.4 * nights), int(0.85 * nights)))
        spec = SeriesSpec(f"s{i:04d}", metric, base=base, unit=unit, noise=round(noise, 4))
        if case == "variance":
            factor = float(rng.uniform(2.0, 3.0))
            new = min(noise * factor, 0.15) if rng.random() < 0.5 else noise / factor
            spec = replace(spec, noise_changes=(NoiseChange(at, round(new, 4)),))
        elif case == "drift":
            spec = replace(spec, drifts=(Drift(at, HARD_DRIFT),))
        elif case.startswith("step"):
            spec = replace(spec, steps=(Step(at, int(case[4:]) / 100),))
        specs.append(spec)
    return specs
