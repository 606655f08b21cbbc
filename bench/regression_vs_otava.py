"""Our change points and verdicts vs Apache Otava on the same labelled synthetic series.

Prints, asserts nothing. For steps of 5/10/20 % at 3 % noise (half latency-like: up is
worse, half throughput-like: down is worse) and for pure noise:

- precision / recall: a detected change point within ±7 nights of the injected step is a
  hit (one per step); any other change point is a false one;
- location error: mean |detected - injected| nights of the hits;
- delay: nights after the step night until the detector, run each night on the history so
  far, first reports a change point within ±7 nights of it (0 = on the step night);
- noise: share of pure-noise series with any change point (verdicts: with a regression);

for three detectors: ``ours`` (detect_change_points, defaults), ``otava``
(otava.analysis.compute_change_points with the same window 50, max_pvalue 0.001,
min_magnitude 0) and ``verdict`` (our regression_verdicts: min effect 5 %, confirmed by a
second night, judged against the last regime of 7+ nights; a hit needs a 'regression' or
'improvement' in the injected direction with first_bad_night within ±7 nights).
Then the wall time of regression_verdicts over 365 nights × 15 tests × 20 metrics.

    pip install apache-otava      # dev only; it pins numpy==2.2 (works with 2.4 here)
    python bench/regression_vs_otava.py [--series 50] [--max-delay 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta

import numpy as np
import polars as pl

from nightly_pipeline.analysis import (
    detect_change_points_many,
    direction_of,
    regression_verdicts,
)
from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.synthetic import Step

NIGHTS = 100
NOISE = 0.03
MATCH = 7
WINDOW = 50
MAX_PVALUE = 0.001
START = date(2025, 1, 1)

Detector = Callable[[list[np.ndarray], list[str]], list[list[tuple[int, int]]]]
"""series, metric names → per series [(index, sign of the change in the worse sense)]"""


def ours(series: list[np.ndarray], metrics: list[str]) -> list[list[tuple[int, int]]]:
    found = detect_change_points_many(series, window=WINDOW, max_pvalue=MAX_PVALUE)
    return [
        [(c.index, _worse_sign(m, c.magnitude)) for c in cps]
        for cps, m in zip(found, metrics, strict=True)
    ]


def otava(series: list[np.ndarray], metrics: list[str]) -> list[list[tuple[int, int]]]:
    from otava.analysis import compute_change_points

    out = []
    for x, m in zip(series, metrics, strict=True):
        # a list, not an ndarray: with an ndarray Otava's split() analyses the whole
        # series in every window (ChangePointDetector only slices non-arrays)
        cps, _ = compute_change_points(
            x.tolist(), window_len=WINDOW, max_pvalue=MAX_PVALUE, min_magnitude=0.0
        )
        out.append([(int(c.index), _worse_sign(m, c.stats.mean_2 - c.stats.mean_1)) for c in cps])
    return out


def verdict(series: list[np.ndarray], metrics: list[str]) -> list[list[tuple[int, int]]]:
    specs = [(f"s{i:04d}", m) for i, m in enumerate(metrics)]
    rows = [
        (START + timedelta(days=j), "bench", t, m, "{}", float(v), "", "passed")
        for (t, m), x in zip(specs, series, strict=True)
        for j, v in enumerate(x)
    ]
    history = pl.DataFrame(rows, schema=syn.HISTORY_SCHEMA, orient="row")
    v = regression_verdicts(history).sort("test")
    out = []
    for row in v.iter_rows(named=True):
        if row["verdict"] == "regression":
            first = (row["first_bad_night"] - START).days
            out.append([(first, 1)])
        elif row["verdict"] == "improvement":
            last = (row["change_nights"][-1] - START).days
            out.append([(last, -1)])
        else:
            out.append([])
    return out


def _worse_sign(metric: str, change: float) -> int:
    worse = 1 if direction_of(metric) == "lower" else -1
    return int(np.sign(change) * worse)


def labelled(size: float, count: int, seed: int) -> tuple[list[np.ndarray], list[str], list[int]]:
    """``count`` series; half latency, half throughput; a worse step at night 30..69."""
    rng = np.random.default_rng(seed)
    series, metrics, steps = [], [], []
    for i in range(count):
        metric = "http_req_duration.p95" if i % 2 == 0 else "http_reqs.rate"
        at = int(rng.integers(30, 70)) if size else -1
        direction = direction_of(metric)
        series.append(
            syn.values(
                seed * 10_000 + i,
                NIGHTS,
                noise=NOISE,
                steps=[Step(at, size)] if size else [],
                direction=direction,
            )
        )
        metrics.append(metric)
        steps.append(at)
    return series, metrics, steps


def score(found: list[list[tuple[int, int]]], steps: Sequence[int]) -> dict[str, float]:
    hits = false = 0
    errors = []
    for cps, at in zip(found, steps, strict=True):
        near = [abs(i - at) for i, sign in cps if at >= 0 and sign == 1 and abs(i - at) <= MATCH]
        if near:
            hits += 1
            errors.append(min(near))
        false += len(cps) - (1 if near else 0)
    n_steps = sum(1 for at in steps if at >= 0)
    return {
        "precision": hits / (hits + false) if hits + false else float("nan"),
        "recall": hits / n_steps if n_steps else float("nan"),
        "loc": statistics.fmean(errors) if errors else float("nan"),
        "any": sum(1 for cps in found if cps) / len(found),
    }


def delays(
    detector: Detector, series: list[np.ndarray], metrics: list[str], steps: list[int], max_delay
) -> tuple[float, int]:
    """Mean nights from the step to the first report, and how many were never reported."""
    first: list[int | None] = [None] * len(series)
    for d in range(max_delay + 1):
        todo = [i for i, f in enumerate(first) if f is None]
        if not todo:
            break
        found = detector([series[i][: steps[i] + d + 1] for i in todo], [metrics[i] for i in todo])
        for i, cps in zip(todo, found, strict=True):
            if any(sign == 1 and abs(j - steps[i]) <= MATCH for j, sign in cps):
                first[i] = d
    got = [f for f in first if f is not None]
    return (statistics.fmean(got) if got else float("nan")), first.count(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=50, help="series per case")
    parser.add_argument("--max-delay", type=int, default=20)
    args = parser.parse_args()
    detectors: dict[str, Detector] = {"ours": ours, "otava": otava, "verdict": verdict}
    print(
        f"{args.series} series × {NIGHTS} nights per case, noise {NOISE:.0%}, "
        f"hit = within ±{MATCH} nights in the worse direction\n"
    )
    header = (
        f"{'case':<10}{'detector':<9}{'precision':>10}{'recall':>8}{'loc err':>9}"
        f"{'delay':>7}{'late':>6}{'time s':>8}"
    )
    print(header)
    print("-" * len(header))
    for k, size in enumerate((0.05, 0.10, 0.20)):
        series, metrics, steps = labelled(size, args.series, seed=k + 1)
        for name, det in detectors.items():
            t0 = time.perf_counter()
            s = score(det(series, metrics), steps)
            elapsed = time.perf_counter() - t0
            mean_delay, late = delays(det, series, metrics, steps, args.max_delay)
            print(
                f"{f'step {size:.0%}':<10}{name:<9}{s['precision']:>10.2f}{s['recall']:>8.2f}"
                f"{s['loc']:>9.2f}{mean_delay:>7.1f}{late:>6}{elapsed:>8.3f}"
            )
    series, metrics, steps = labelled(0.0, args.series * 4, seed=9)
    for name, det in detectors.items():
        s = score(det(series, metrics), steps)
        label = "with a verdict other than stable" if name == "verdict" else "with any change point"
        print(f"{'noise':<10}{name:<9} {s['any']:>6.1%} of {len(series)} series {label}")
    print("  (late: not reported within --max-delay nights; delay 0 = on the step night)\n")

    history = syn.history(2025, 365)  # 15 tests × 20 metrics
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        v = regression_verdicts(history)
        runs.append(time.perf_counter() - t0)
    print(
        f"regression_verdicts: {history.height:,} rows, {v.height} series × 365 nights: "
        f"best {min(runs):.2f} s, worst {max(runs):.2f} s (goal < 2 s)"
    )
    values = [g["value"].to_numpy() for _, g in history.sort("night").group_by("test", "metric")]
    t0 = time.perf_counter()
    otava(values, ["x.p95"] * len(values))
    print(f"otava compute_change_points on the same 300 series: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
