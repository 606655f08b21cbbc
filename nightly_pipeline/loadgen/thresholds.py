"""k6 thresholds: parse once, evaluate over the whole run and over sliding windows.

Exceptions::

    ThresholdError (ValueError)
     └── ThresholdSyntaxError      bad expression / selector / option; .problems lists all
          └── ThresholdKindError   aggregation not supported by the metric's kind

Specs follow k6's ``options.thresholds``: ``{selector: [expression | {"threshold": ...,
"abortOnFail": bool, "delayAbortEval": "10s", "window": "5s"}]}`` where a selector is
``name`` or ``name{k:v,k2:v2}`` (a submetric: samples whose tags contain those pairs).
``window`` is our extension: the expression must also hold over every sliding window of
that many whole seconds (step 1 s); the worst window is reported. ``parse_thresholds(...,
default_window=...)`` sets it for every threshold without one (``"window": None`` opts
out).

Aggregations per kind (k6's, plus the ones marked * which k6 rejects)::

    trend: avg min max med p(N) count*   counter: count rate
    rate: rate                           gauge: value min* max*

Missing data (k6 v1.1.0, checked with the real binary): k6 refuses thresholds on
undefined metrics; on a defined metric without samples it evaluates zeros (a Trend's
``p(95)<100`` passes on no data) and silently passes every Rate threshold. We
deliberately do not: a threshold whose metric has no samples FAILS with observed NaN
(detail "no samples"), because an unattended nightly run must not pass on no data.
Counters are the exception, as in k6: a counter that never fired has count 0, so
``dead_letters: count==0`` passes — provided the metric's kind is known (recorded,
`Recorder.declare`d, a k6 built-in, or given in ``kinds=``). During a run
(`check_live`), metrics and windows without samples are skipped, as k6 does.

A metric the target cannot offer at all (a deployed platform whose ``/metrics`` lacks the
gauge a check reads) is neither: ``not_measurable`` marks its results with the reason,
and they count as neither passed nor failed (``ThresholdResult.not_measurable``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nightly_pipeline.loadgen.metrics_series import TagsKey
from nightly_pipeline.loadgen.metrics_stats import COUNTER, RATE, TREND, empty_stats
from nightly_pipeline.loadgen.metrics_threshold_spec import (
    GRAMMAR,
    K6_BUILTIN_KINDS,
    Expression,
    Threshold,
    ThresholdError,
    ThresholdKindError,
    ThresholdSyntaxError,
    parse_duration,
    parse_expression,
    parse_selector,
    parse_thresholds,
)
from nightly_pipeline.loadgen.recorder import Recorder

__all__ = [
    "GRAMMAR",
    "K6_BUILTIN_KINDS",
    "NOT_MEASURABLE",
    "NOT_MEASURABLE_SEVERITY",
    "Expression",
    "Threshold",
    "ThresholdError",
    "ThresholdEvaluator",
    "ThresholdKindError",
    "ThresholdResult",
    "ThresholdSyntaxError",
    "not_measurable",
    "parse_duration",
    "parse_expression",
    "parse_selector",
    "parse_thresholds",
]


@dataclass(frozen=True)
class ThresholdResult:
    metric: str
    tags: dict[str, str]
    expression: str
    scope: str  # "run" | "window"
    passed: bool
    observed: float
    window_start: int | None = None  # seconds since run start; the worst window
    window_end: int | None = None
    abort_on_fail: bool = False
    selector: str = ""
    window_s: int | None = None
    detail: str = field(default="", compare=False)
    not_measurable: str = ""
    """Why the target cannot offer this metric; set, the result is a visible skip:
    ``passed`` is False and it must not be counted as a failure either."""

    @property
    def failed(self) -> bool:
        return not self.passed and not self.not_measurable


NOT_MEASURABLE = "not measurable on this target"
NOT_MEASURABLE_SEVERITY = "not_measurable"
"""The stored severity of a not-measurable threshold (the store has no third verdict)."""


def not_measurable(
    results: Iterable[ThresholdResult], reasons: Mapping[str, str]
) -> list[ThresholdResult]:
    """``results`` with those on a metric named in ``reasons`` (metric -> why the target
    cannot offer it) turned into skips: not passed, not failed, observed NaN."""
    return [
        dataclasses.replace(
            r,
            passed=False,
            observed=math.nan,
            window_start=None,
            window_end=None,
            detail=f"{NOT_MEASURABLE}: {reasons[r.metric]}",
            not_measurable=reasons[r.metric],
        )
        if r.metric in reasons
        else r
        for r in results
    ]


def _has_data(kind: str, stats: Mapping[str, float]) -> bool:
    if kind == COUNTER:
        return True
    if kind == TREND:
        return stats.get("count", 0) > 0
    if kind == RATE:
        return stats.get("passes", 0) + stats.get("fails", 0) > 0
    return not math.isnan(stats.get("value", math.nan))


class ThresholdEvaluator:
    """Evaluates thresholds against a Recorder: live (abortOnFail) and at the end.

    Windows are the recorder's closed seconds; a window without samples is skipped
    (except for counters, where it counts 0). ``check_live`` only considers windows that
    end after the threshold's delayAbortEval; ``final`` considers every window.
    """

    def __init__(self, thresholds: Iterable[Threshold], recorder: Recorder) -> None:
        self._ths = list(thresholds)
        self._rec = recorder
        self._live_next: dict[int, int] = {}
        problems: list[str] = []
        for th in self._ths:
            try:
                self._kind(th)
            except ThresholdKindError as e:
                problems.extend(e.problems)
        if problems:
            raise ThresholdKindError(problems)

    @property
    def thresholds(self) -> list[Threshold]:
        return list(self._ths)

    def _kind(self, th: Threshold) -> str | None:
        kind = self._rec.kinds().get(th.metric) or K6_BUILTIN_KINDS.get(th.metric)
        if kind is not None:
            th.check_kind(kind)
        return kind

    def _result(
        self, th: Threshold, scope: str, passed: bool, observed: float, **kw: object
    ) -> ThresholdResult:
        return ThresholdResult(
            th.metric,
            dict(th.tags),
            th.expression.source,
            scope,
            passed,
            observed,
            abort_on_fail=th.abort_on_fail,
            selector=th.selector,
            window_s=th.window_s,
            **kw,
        )  # type: ignore[arg-type]

    def _scan(self, ths: Sequence[Threshold], kind: str, start: int, end: int) -> list[tuple]:
        """Worst window per threshold: (failed, badness, tie-break, start, end, observed) or ().

        Ties (e.g. several windows whose p(95) lands on the same bad value) go to the window
        whose average is worse, then to the earliest.
        """
        th0 = ths[0]
        worst: list[tuple] = [()] * len(ths)
        for ws, we, stats in self._rec.windows(
            th0.metric, dict(th0.tags), th0.window_s or 0, start, end
        ):
            if not _has_data(kind, stats):
                continue
            for i, th in enumerate(ths):
                expr = th.expression
                obs = expr.observe(stats)
                tie = expr.badness(stats.get("avg", obs))
                cand = (not expr.holds(obs), expr.badness(obs), tie, ws, we, obs)
                if not worst[i] or cand[:3] > worst[i][:3]:
                    worst[i] = cand
        return worst

    def _window_result(self, th: Threshold, worst: tuple) -> ThresholdResult:
        if not worst:
            return self._result(
                th, "window", True, math.nan, detail="no complete window with samples"
            )
        failed, _, _, ws, we, obs = worst
        return self._result(th, "window", not failed, obs, window_start=ws, window_end=we)

    def check_live(self, elapsed_s: float) -> list[ThresholdResult]:
        """Failing abortOnFail thresholds (run so far, and windows closed so far)."""
        out: list[ThresholdResult] = []
        limit = min(math.floor(elapsed_s), self._rec.closed_until)
        for i, th in enumerate(self._ths):
            if not th.abort_on_fail or elapsed_s < th.delay_abort_eval_s:
                continue
            kind = self._kind(th)
            if kind is None:
                continue
            stats = self._rec.stats(th.metric, dict(th.tags)) or empty_stats(kind)
            if _has_data(kind, stats):
                obs = th.expression.observe(stats)
                if not th.expression.holds(obs):
                    out.append(self._result(th, "run", False, obs, detail="so far"))
            if th.window_s:
                first = max(
                    self._live_next.get(i, 0),
                    math.floor(th.delay_abort_eval_s) - th.window_s + 1,
                    0,
                )
                (worst,) = self._scan([th], kind, first, limit)
                self._live_next[i] = max(first, limit - th.window_s + 1)
                if worst and worst[0]:
                    out.append(self._window_result(th, worst))
        return out

    def final(self) -> list[ThresholdResult]:
        """Every threshold over the whole run, plus its worst window when it has one."""
        out: list[ThresholdResult] = []
        cache: dict[tuple[str, TagsKey], Mapping[str, float]] = {}
        groups: dict[tuple[str, TagsKey, int], list[Threshold]] = {}
        for th in self._ths:
            if th.window_s:
                groups.setdefault((th.metric, th.tags, th.window_s), []).append(th)
        windows: dict[int, tuple] = {}
        for ths in groups.values():
            kind = self._kind(ths[0])
            worst = self._scan(ths, kind, 0, self._rec.closed_until) if kind else [()] * len(ths)
            windows.update({id(th): w for th, w in zip(ths, worst, strict=True)})
        for th in self._ths:
            kind = self._kind(th)
            if kind is None:
                out.append(
                    self._result(
                        th, "run", False, math.nan, detail="metric never recorded or declared"
                    )
                )
            else:
                key = (th.metric, th.tags)
                if key not in cache:
                    cache[key] = self._rec.stats(th.metric, dict(th.tags)) or empty_stats(kind)
                if _has_data(kind, cache[key]):
                    obs = th.expression.observe(cache[key])
                    out.append(self._result(th, "run", th.expression.holds(obs), obs))
                else:
                    out.append(self._result(th, "run", False, math.nan, detail="no samples"))
            if th.window_s:
                out.append(self._window_result(th, windows.get(id(th), ())))
        return out
