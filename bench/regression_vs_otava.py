"""Our verdicts vs Apache Otava vs the plan's rule, night by night on hard synthetic series.

Prints, asserts nothing. Part 1 (``--part verdicts``, the default with the timing) walks
every ``synthetic.hard_case`` forward: each night from night 30 on, each detector sees
the history up to that night only and says "regression" or not, as the nightly job would.
Every case has per-series noise (CV) of 1–10 % and ~3 % missing nights; the hazards are
isolated 3–5× outliers, a variance change, a slow drift (0.5 %/night) and worse steps of
5/10/20 %. Per case and detector:

- false alerts per 100 quiet nights per series: regression alerts on nights with no step
  (or drift) on or before them, × 100 / those nights; each alerting night counts, since
  each is a morning someone reads a false verdict (target ≤ 0.3). Outliers and variance
  changes are quiet: any alert on them is false;
- recall: share of steps with an alert within ``WINDOW`` (14) nights on or after the step
  night (target ≥ 0.85 for steps ≥ 5 %); delay: median nights from the step to the first
  alert (target ≤ 2);
- drift is a regression we want flagged *eventually* (a memory creep is one): its nights
  before the drift are quiet nights, and its "step" night is the night its cumulative
  change reaches the 5 % minimum effect; an alert from the drift's first night on is a
  hit (delay counted from the 5 % night, 0 if earlier). Recall within 14 nights of that.

Detectors: ``ours`` (regression_verdicts, defaults: verdict == 'regression'; its parts
alone: ``changepoints``, ``cusum_threshold=None, recent_nights=False``; ``cusum``,
analysis/cusum.py; ``recent``, analysis/recent.py; and ``before_recent``, the verdicts
without the recent-nights test), ``otava``
(otava.analysis.compute_change_points over the usable nights, window 50, p 0.001,
min_magnitude 0.05 — our minimum effect; an alert when its latest change point is in the
worse direction, as ``otava regressions`` reports the last change) and ``plan`` (the plan's
rule firing on the night: the last 3 usable nights each >10 % worse than the 7 before),
and on the quiet and step cases ``oracle``: a CUSUM told each series' true level, noise
and step size, at 0.3 false alerts per 100 quiet nights, the bound on what any detector
can reach on those series (``hard_oracle``).
Step cases are also split by the series' noise: CV ≤ 3 % and CV > 3 %.

Part 2 (``--part changepoints``): the raw change-point comparison. For steps of 5/10/20 %
at 3 % noise (half latency-like: up is worse, half throughput-like: down is worse) and for
pure noise:

- precision / recall: a detected change point within ±7 nights of the injected step is a
  hit (one per step); any other change point is a false one;
- location error: mean |detected - injected| nights of the hits;
- delay: nights after the step night until the detector, run each night on the history so
  far, first reports a change point within ±7 nights of it (0 = on the step night);
- noise: share of pure-noise series with any change point (verdicts: with a regression);

for three detectors: ``ours`` (detect_change_points, defaults), ``otava``
(otava.analysis.compute_change_points with the same window 50, max_pvalue 0.001,
min_magnitude 0) and ``verdict`` (our regression_verdicts: min effect 5 %, confirmed by a
second night, judged against the last regime of 14+ nights; a hit needs a 'regression' or
'improvement' in the injected direction with first_bad_night within ±7 nights).
Then the wall time of regression_verdicts over 365 nights × 15 tests × 20 metrics.

    pip install apache-otava      # dev only; it pins numpy==2.2 (works with 2.4 here)
    python bench/regression_vs_otava.py [--part verdicts|changepoints|timing|all]
        [--hard-series 60] [--cases step5,step10]
        [--detectors ours,otava,plan,oracle,changepoints,cusum,recent,before_recent]
        [--series 50] [--max-delay 20]
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
    plan_rule,
    regression_verdicts,
)
from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.cusum import THRESHOLD as CUSUM_THRESHOLD
from nightly_pipeline.analysis.cusum import worsening_alarm
from nightly_pipeline.analysis.direction import worse_sign
from nightly_pipeline.analysis.plan_rule import firing_on_last_night
from nightly_pipeline.analysis.recent import recent_worsening
from nightly_pipeline.analysis.synthetic import Step

NIGHTS = 100
NOISE = 0.03
MATCH = 7
WINDOW = 50
MAX_PVALUE = 0.001
START = date(2025, 1, 1)

Detector = Callable[[list[np.ndarray], list[str]], list[list[tuple[int, int]]]]
"""series, metric names → per series [(index, sign of the change in the worse sense)]"""


# -- part 1: verdicts night by night on the hard cases ---------------------------------

HARD_NIGHTS = 100
EVAL_FROM = 30
WINDOW_NIGHTS = 14
MIN_EFFECT = 0.05
TARGET_FALSE = 0.3
TARGET_RECALL = 0.85
TARGET_DELAY = 2.0
LOW_CV = 0.03


def worse_sign_of(metric: str) -> float:
    """+1 where up is worse (latency), -1 where down is (throughput)."""
    return worse_sign(direction_of(metric))


class HardCase:
    """One hard case as arrays: values[series, night] (NaN when missing) and the truth."""

    def __init__(self, name: str, seed: int, count: int) -> None:
        history, truth = syn.hard_case(name, seed, count, HARD_NIGHTS)
        self.name = name
        self.history = history
        self.start = syn.date(2025, 1, 1)
        wide = history.pivot(on="night", index=["test", "metric"], values="value").sort("test")
        self.tests = wide["test"].to_list()
        self.metrics = wide["metric"].to_list()
        days = [self.start + timedelta(days=i) for i in range(HARD_NIGHTS)]
        self.values = np.column_stack(
            [
                wide[str(d)].cast(pl.Float64).fill_null(float("nan")).to_numpy()
                if str(d) in wide.columns
                else np.full(wide.height, np.nan)
                for d in days
            ]
        )
        specs = {s.test: s for s in syn.hard_specs(name, seed, count, HARD_NIGHTS)}
        self.noise = np.array([specs[t].noise for t in self.tests])
        self.base = np.array([specs[t].base for t in self.tests])
        self.onset = np.full(len(self.tests), HARD_NIGHTS * 10)  # first night that is not quiet
        self.hit_from = self.onset.copy()  # first night an alert counts as a hit
        row = {t: i for i, t in enumerate(self.tests)}
        for t, kind, i, size in truth.select("test", "kind", "index", "size").iter_rows():
            if kind == "step":
                self.onset[row[t]] = self.hit_from[row[t]] = i
            elif kind == "drift":  # flagged once it reaches the minimum effect
                self.hit_from[row[t]] = i
                self.onset[row[t]] = i + int(np.ceil(MIN_EFFECT / size - 1e-9))


def hard_ours(
    case: HardCase, cusum: float | None = CUSUM_THRESHOLD, recent: bool = True
) -> np.ndarray:
    """alerts[series, night]: regression_verdicts run on each night's history."""
    alerts = np.zeros(case.values.shape, dtype=bool)
    row = {t: i for i, t in enumerate(case.tests)}
    for night in range(EVAL_FROM, HARD_NIGHTS):
        v = regression_verdicts(
            case.history,
            evaluated_night=case.start + timedelta(night),
            cusum_threshold=cusum,
            recent_nights=recent,
        )
        for t in v.filter(verdict="regression")["test"].to_list():
            alerts[row[t], night] = True
    return alerts


def hard_changepoints(case: HardCase) -> np.ndarray:
    """The verdicts without their CUSUM and recent-nights test: change points alone."""
    return hard_ours(case, cusum=None, recent=False)


def hard_before_recent(case: HardCase) -> np.ndarray:
    """The verdicts without the recent-nights test: change points and CUSUM."""
    return hard_ours(case, recent=False)


def hard_otava(case: HardCase) -> np.ndarray:
    from otava.analysis import compute_change_points

    alerts = np.zeros(case.values.shape, dtype=bool)
    for s, x in enumerate(case.values):
        worse = worse_sign_of(case.metrics[s])
        for night in range(EVAL_FROM, HARD_NIGHTS):
            prefix = x[: night + 1]
            usable = prefix[np.isfinite(prefix)].tolist()
            cps, _ = compute_change_points(
                usable, window_len=WINDOW, max_pvalue=MAX_PVALUE, min_magnitude=MIN_EFFECT
            )
            if cps:
                last = cps[-1].stats
                alerts[s, night] = worse * (last.mean_2 - last.mean_1) > 0
    return alerts


ORACLE_CASES = ("quiet", "step5", "step10", "step20")


def cusum_threshold(k: float, false_per_night: float, chains: int = 4000) -> float:
    """The one-sided CUSUM threshold ``h`` (restarted after each alert) that alerts on
    ``false_per_night`` of N(0,1) nights with reference value ``k``: bisection over ``h``
    on simulated quiet series (seeded; the same ``k`` gives the same ``h``)."""
    z = np.random.default_rng(0).standard_normal((HARD_NIGHTS, chains))

    def rate(h: float) -> float:
        total, alerts = np.zeros(chains), 0
        for night in range(HARD_NIGHTS):
            total = np.maximum(0.0, total + z[night] - k)
            fired = total > h
            if night >= EVAL_FROM:
                alerts += int(fired.sum())
            total[fired] = 0.0
        return alerts / (chains * (HARD_NIGHTS - EVAL_FROM))

    lo, hi = 0.0, 30.0
    for _ in range(30):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if rate(mid) > false_per_night else (lo, mid)
    return hi


def hard_oracle(case: HardCase) -> np.ndarray | None:
    """What no detector can beat: a one-sided CUSUM told each series' true level, its
    noise and the size of the step to look for (the case's, or 5 % on quiet series),
    its threshold set for one alert per 1 / ``TARGET_FALSE`` × 100 quiet nights. CUSUM
    detects a known shift fastest at a given false-alert rate (Lorden; Moustakides), so
    its recall and delay bound every detector's on the same series. Only for the cases
    whose noise is what it is told (no outliers, no variance change, no drift)."""
    if case.name not in ORACLE_CASES:
        return None
    step = int(case.name[4:]) / 100 if case.name.startswith("step") else MIN_EFFECT
    alerts = np.zeros(case.values.shape, dtype=bool)
    thresholds: dict[float, float] = {}
    for s, x in enumerate(case.values):
        worse = worse_sign_of(case.metrics[s])
        shift = step / case.noise[s]  # the step in standard deviations
        k = round(shift / 2.0, 2)
        if k not in thresholds:
            thresholds[k] = cusum_threshold(k, TARGET_FALSE / 100)
        h = thresholds[k]
        total = 0.0
        for night in range(HARD_NIGHTS):
            if not np.isfinite(x[night]):
                continue
            z = worse * (x[night] / case.base[s] - 1.0) / case.noise[s]
            total = max(0.0, total + z - k)
            if total > h:
                alerts[s, night] = night >= EVAL_FROM
                total = 0.0  # counted, and started over
    return alerts


def _each_night(case: HardCase, alarm: Callable[[np.ndarray, float, float], object]) -> np.ndarray:
    """alerts[series, night]: ``alarm(usable nights so far, worse sign, min effect)`` is
    not None."""
    alerts = np.zeros(case.values.shape, dtype=bool)
    for s, x in enumerate(case.values):
        worse = worse_sign_of(case.metrics[s])
        for night in range(EVAL_FROM, HARD_NIGHTS):
            prefix = x[: night + 1]
            alerts[s, night] = alarm(prefix[np.isfinite(prefix)], worse, MIN_EFFECT) is not None
    return alerts


def hard_cusum(case: HardCase) -> np.ndarray:
    """The verdicts' CUSUM alone (analysis/cusum.py), on each night's usable history."""
    return _each_night(case, worsening_alarm)


def hard_recent(case: HardCase) -> np.ndarray:
    """The verdicts' recent-nights test alone (analysis/recent.py)."""
    return _each_night(case, recent_worsening)


def hard_plan(case: HardCase) -> np.ndarray:
    alerts = np.zeros(case.values.shape, dtype=bool)
    for s, x in enumerate(case.values):
        for night in range(EVAL_FROM, HARD_NIGHTS):
            prefix = x[: night + 1]
            usable = prefix[np.isfinite(prefix)]
            result = plan_rule(usable.tolist(), direction_of(case.metrics[s]))
            alerts[s, night] = firing_on_last_night(result)
    return alerts


def hard_score(case: HardCase, alerts: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """False alerts per 100 quiet series-nights, recall and median delay over ``rows``."""
    nights = np.arange(HARD_NIGHTS)
    evaluated = nights >= EVAL_FROM
    quiet = evaluated[None, :] & (nights[None, :] < np.minimum(case.onset, case.hit_from)[:, None])
    quiet &= rows[:, None]
    false = int((alerts & quiet).sum())
    got, scored = [], 0
    for s in np.flatnonzero(rows):
        onset = int(case.onset[s])
        if onset >= HARD_NIGHTS or onset < EVAL_FROM or onset + WINDOW_NIGHTS >= HARD_NIGHTS:
            continue  # no hazard, or its window does not fit in the evaluated nights
        scored += 1
        hits = np.flatnonzero(alerts[s, case.hit_from[s] : onset + WINDOW_NIGHTS + 1])
        if hits.size:
            got.append(max(0, int(case.hit_from[s] + hits[0]) - onset))
    return {
        "false": 100.0 * false / quiet.sum() if quiet.sum() else float("nan"),
        "quiet": int(quiet.sum()),
        "recall": len(got) / scored if scored else float("nan"),
        "scored": scored,
        "delay": statistics.median(got) if got else float("nan"),
    }


def _met(s: dict[str, float], hazard: bool) -> str:
    ok = [s["false"] <= TARGET_FALSE]
    if hazard:
        ok += [s["recall"] >= TARGET_RECALL, s["delay"] <= TARGET_DELAY]
    return "yes" if all(ok) else "NO"


def hard_verdicts(count: int, seed: int, cases: Sequence[str], detectors: Sequence[str]) -> None:
    known = {
        "ours": hard_ours,
        "otava": hard_otava,
        "plan": hard_plan,
        "oracle": hard_oracle,
        "changepoints": hard_changepoints,
        "cusum": hard_cusum,
        "recent": hard_recent,
        "before_recent": hard_before_recent,
    }
    detectors = {name: known[name] for name in detectors}
    print(
        f"Part 1: verdicts night by night, {count} series × {HARD_NIGHTS} nights per case "
        f"(CV 1–10 %, 3 % missing), evaluated nights {EVAL_FROM}–{HARD_NIGHTS - 1}, "
        f"hit = alert within {WINDOW_NIGHTS} nights\n"
        f"targets: false ≤ {TARGET_FALSE} per 100 quiet nights per series; steps ≥ 5 %: "
        f"recall ≥ {TARGET_RECALL}, median delay ≤ {TARGET_DELAY:.0f} nights\n"
    )
    header = (
        f"{'case':<22}{'detector':<14}{'false/100':>10}{'quiet n':>9}"
        f"{'recall':>8}{'of':>5}{'delay':>7}{'met':>5}{'time s':>8}"
    )
    for name in cases:
        case = HardCase(name, seed, count)
        hazard = name not in ("quiet", "outliers", "variance")
        splits = [("all", np.ones(len(case.tests), dtype=bool))]
        if name.startswith("step"):
            splits += [
                (f"CV ≤ {LOW_CV:.0%}", case.noise <= LOW_CV),
                (f"CV > {LOW_CV:.0%}", case.noise > LOW_CV),
            ]
        print(header)
        print("-" * len(header))
        for det_name, det in detectors.items():
            t0 = time.perf_counter()
            alerts = det(case)
            elapsed = time.perf_counter() - t0
            if alerts is None:
                continue  # the oracle: not for this case
            for label, rows in splits:
                s = hard_score(case, alerts, rows)
                title = name if label == "all" else f"  {label}"
                print(
                    f"{title:<22}{det_name:<14}{s['false']:>10.2f}{s['quiet']:>9}"
                    f"{s['recall']:>8.2f}{s['scored']:>5}{s['delay']:>7.1f}"
                    f"{_met(s, hazard):>5}{elapsed if label == 'all' else 0:>8.1f}"
                )
        print()


# -- part 2: raw change points ---------------------------------------------------------


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
    return int(np.sign(change) * worse_sign_of(metric))


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
    parser.add_argument(
        "--part", choices=("verdicts", "changepoints", "timing", "all"), default=None
    )
    parser.add_argument("--hard-series", type=int, default=60, help="series per hard case")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--cases", default=",".join(syn.HARD_CASES), help="comma-separated hard cases"
    )
    parser.add_argument(
        "--detectors",
        default="ours,otava,plan,oracle",
        help="ours,otava,plan,oracle; parts of ours: changepoints, cusum, recent, before_recent",
    )
    parser.add_argument("--series", type=int, default=50, help="series per change-point case")
    parser.add_argument("--max-delay", type=int, default=20)
    args = parser.parse_args()
    parts = {"verdicts", "timing"} if args.part is None else {args.part}
    if "all" in parts:
        parts = {"verdicts", "changepoints", "timing"}
    if "verdicts" in parts:
        hard_verdicts(args.hard_series, args.seed, args.cases.split(","), args.detectors.split(","))
    if "changepoints" in parts:
        changepoints(args.series, args.max_delay)
    if "timing" in parts:
        timing()


def changepoints(count: int, max_delay: int) -> None:
    detectors: dict[str, Detector] = {"ours": ours, "otava": otava, "verdict": verdict}
    print(
        f"Part 2: raw change points, {count} series × {NIGHTS} nights per case, noise {NOISE:.0%}, "
        f"hit = within ±{MATCH} nights in the worse direction\n"
    )
    header = (
        f"{'case':<10}{'detector':<9}{'precision':>10}{'recall':>8}{'loc err':>9}"
        f"{'delay':>7}{'late':>6}{'time s':>8}"
    )
    print(header)
    print("-" * len(header))
    for k, size in enumerate((0.05, 0.10, 0.20)):
        series, metrics, steps = labelled(size, count, seed=k + 1)
        for name, det in detectors.items():
            t0 = time.perf_counter()
            s = score(det(series, metrics), steps)
            elapsed = time.perf_counter() - t0
            mean_delay, late = delays(det, series, metrics, steps, max_delay)
            print(
                f"{f'step {size:.0%}':<10}{name:<9}{s['precision']:>10.2f}{s['recall']:>8.2f}"
                f"{s['loc']:>9.2f}{mean_delay:>7.1f}{late:>6}{elapsed:>8.3f}"
            )
    series, metrics, steps = labelled(0.0, count * 4, seed=9)
    for name, det in detectors.items():
        s = score(det(series, metrics), steps)
        label = "with a verdict other than stable" if name == "verdict" else "with any change point"
        print(f"{'noise':<10}{name:<9} {s['any']:>6.1%} of {len(series)} series {label}")
    print("  (late: not reported within --max-delay nights; delay 0 = on the step night)\n")


def timing() -> None:

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
