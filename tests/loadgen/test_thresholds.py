"""Thresholds: grammar table, spec parsing, sliding windows, live abort. Fake clock."""

from __future__ import annotations

import math

import pytest

from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.thresholds import (
    GRAMMAR,
    Threshold,
    ThresholdEvaluator,
    ThresholdKindError,
    ThresholdSyntaxError,
    parse_expression,
    parse_selector,
    parse_thresholds,
)

T0 = 500.0
STATS = {
    "avg": 50.0,
    "min": 1.0,
    "max": 300.0,
    "med": 40.0,
    "p(95)": 87.1,
    "p(99.9)": 250.0,
    "p(0)": 1.0,
    "count": 0.0,
    "rate": 0.0005,
    "value": 0.8,
}

EXPRESSIONS = [
    # (expression, expected: True pass / False fail)
    ("avg<100", True),
    ("avg<50", False),
    ("avg<=50", True),
    ("min>0.5", True),
    ("min>=1", True),
    ("min>1", False),
    ("max<300", False),
    ("max<=300", True),
    ("med==40", True),
    ("med===40", True),
    ("med!=40", False),
    ("p(95)<100", True),
    ("p(95) < 87", False),
    ("  p( 99.9 )  <=  250  ", True),
    ("p(0)>=1", True),
    ("count==0", True),
    ("count>0", False),
    ("count!=0", False),
    ("rate<0.001", True),
    ("rate<1e-4", False),
    ("rate<.001", True),
    ("value>0.8", False),
    ("value>=0.8", True),
    ("value>-1", True),
    ("p(50)<1", None),  # not in the map → NaN → fails
]


@pytest.mark.parametrize(("text", "expected"), EXPRESSIONS)
def test_expression_table(text: str, expected: bool | None) -> None:
    expr = parse_expression(text)
    observed = expr.observe(STATS)
    if expected is None:
        assert math.isnan(observed) and not expr.holds(observed)
    else:
        assert expr.holds(observed) is expected
    assert expr.source == text


def test_expression_tree() -> None:
    expr = parse_expression("p(99.90) === 3e2")
    assert (expr.aggregation, expr.op, expr.bound, expr.method) == ("p(99.9)", "==", 300.0, "p")
    assert parse_expression("p(95.0)<1").aggregation == "p(95)"


def test_nan_fails_every_operator() -> None:
    for op in ("<", "<=", ">", ">=", "==", "!="):
        assert not parse_expression(f"avg{op}1").holds(math.nan)


INVALID = [
    "",
    "p95<100",
    "p(95)<<1",
    "avg < ",
    "< 100",
    "avg 100",
    "mean<1",
    "p(101)<1",
    "p(-1)<1",
    "avg=1",
    "avg<1ms",
    "avg<1 extra",
    "p()<1",
    "rate<0.1%",
    "avg<nan",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_expressions_quote_the_text_and_the_grammar(text: str) -> None:
    with pytest.raises(ThresholdSyntaxError) as err:
        parse_expression(text)
    assert repr(text) in str(err.value)
    if "p(" not in text or "1)" not in text:  # out-of-range percentiles say so instead
        assert GRAMMAR in str(err.value)


SELECTORS = [
    ("http_req_duration", ("http_req_duration", (), "http_req_duration")),
    ("d{name:login}", ("d", (("name", "login"),), "d{name:login}")),
    ('d{ b : "2" , a:1}', ("d", (("a", "1"), ("b", "2")), 'd{b : "2" , a:1}')),
    ("d{url:http://x:80/}", ("d", (("url", "http://x:80/"),), "d{url:http://x:80/}")),
]


@pytest.mark.parametrize(("text", "expected"), SELECTORS)
def test_selectors(text: str, expected: tuple) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize("text", ["", "{a:b}", "d{a}", "d{a:b", "1abc"])
def test_invalid_selectors(text: str) -> None:
    with pytest.raises(ThresholdSyntaxError, match="selector"):
        parse_selector(text)


def test_parse_thresholds_spec() -> None:
    ths = parse_thresholds(
        {
            "http_req_duration": ["p(95)<100"],
            "http_req_duration{name:login}": [
                {"threshold": "p(99)<300", "abortOnFail": True, "delayAbortEval": "1m30s"}
            ],
            "http_req_failed": "rate<0.001",
            "lat": [{"threshold": "avg<5", "window": "5s"}, {"threshold": "max<9", "window": None}],
        },
        default_window="10s",
    )
    assert [(t.selector, t.expression.source, t.window_s) for t in ths] == [
        ("http_req_duration", "p(95)<100", 10),
        ("http_req_duration{name:login}", "p(99)<300", 10),
        ("http_req_failed", "rate<0.001", 10),
        ("lat", "avg<5", 5),
        ("lat", "max<9", None),
    ]
    login = ths[1]
    assert (login.tags, login.abort_on_fail, login.delay_abort_eval_s) == (
        (("name", "login"),),
        True,
        90.0,
    )


def test_parse_thresholds_reports_every_problem_at_once() -> None:
    spec = {
        "http_req_duration": ["p(95)<<1", "rate<1", {"threshold": "avg<1", "window": "1.5s"}],
        "bad{x": ["avg<1"],
        "lat": [
            {"threshold": "avg<1", "abortOnFail": "yes", "delayAbortEval": "soon", "oops": 1},
            7,
        ],
        "c": [{"abortOnFail": True}],
    }
    with pytest.raises(ThresholdSyntaxError) as err:
        parse_thresholds(spec)
    problems = err.value.problems
    assert len(problems) == 9, problems
    text = str(err.value)
    for needle in (
        "'p(95)<<1'",
        "'rate' does not apply to a trend",
        "whole number of seconds",
        "'bad{x'",
        "abortOnFail 'yes'",
        "delayAbortEval 'soon'",
        "['oops']",
        "7 is neither",
        "no 'threshold'",
    ):
        assert needle in text, needle
    assert isinstance(ThresholdKindError("x"), ThresholdSyntaxError)


@pytest.mark.parametrize(
    ("metric", "expression", "kind"),
    [
        ("http_req_duration", "rate<1", "trend"),
        ("vus", "p(95)<1", "gauge"),
        ("http_req_failed", "count>1", "rate"),
        ("http_reqs", "value>1", "counter"),
        ("custom", "avg<1", "counter"),
    ],
)
def test_aggregation_must_fit_the_kind(metric: str, expression: str, kind: str) -> None:
    with pytest.raises(ThresholdKindError, match=f"does not apply to a {kind} metric"):
        parse_thresholds({metric: [expression]}, kinds={"custom": "counter"})


def test_kind_of_a_custom_metric_is_checked_against_the_recorder() -> None:
    rec = Recorder(T0)
    rec.counter("sent", T0)
    ths = parse_thresholds({"sent": ["p(95)<1"]})  # kind unknown at parse time
    with pytest.raises(ThresholdKindError, match="'p' does not apply to a counter"):
        ThresholdEvaluator(ths, rec)


def _steady_with_bad_patch(rec: Recorder, seconds: int = 120, patch: range = range(60, 65)) -> None:
    for s in range(seconds):
        for i in range(50):
            at = T0 + s + i / 50
            rec.trend("http_req_duration", 300.0 if s in patch else 10.0, at, {"name": "send"})
            rec.rate("http_req_failed", False, at)


def test_sliding_window_catches_a_bad_patch_that_the_whole_run_hides() -> None:
    rec = Recorder(T0)
    _steady_with_bad_patch(rec)
    rec.close_all()
    ths = parse_thresholds({"http_req_duration": [{"threshold": "p(95)<100", "window": "5s"}]})
    run, window = ThresholdEvaluator(ths, rec).final()
    assert (run.scope, run.passed) == ("run", True)
    assert run.observed < 11  # 5 bad seconds of 120 are 4 % of the samples: p(95) is fine
    assert (window.scope, window.passed, window.observed) == ("window", False, 300.0)
    # every window touching the patch has p(95) = 300; the worst by average is the patch itself
    assert (window.window_start, window.window_end) == (60, 65)
    # a passing windowed threshold still names its worst window
    ok = parse_thresholds({"http_req_duration": [{"threshold": "max<1000", "window": 5}]})
    _, ok_window = ThresholdEvaluator(ok, rec).final()
    assert ok_window.passed and ok_window.observed == 300.0


def test_window_results_on_submetrics_and_rates() -> None:
    rec = Recorder(T0)
    for s in range(20):
        for i in range(10):
            rec.rate("http_req_failed", s == 7 and i < 5, T0 + s + i / 10, {"name": "send"})
    rec.close_all()
    ths = parse_thresholds(
        {"http_req_failed{name:send}": [{"threshold": "rate<0.1", "window": "2s"}]}
    )
    run, window = ThresholdEvaluator(ths, rec).final()
    assert run.passed and run.observed == pytest.approx(5 / 200)
    assert not window.passed and window.observed == 0.25 and window.window_start in (6, 7)
    assert window.tags == {"name": "send"} and window.selector == "http_req_failed{name:send}"


def test_missing_metrics_fail_with_nan_but_a_known_counter_counts_zero() -> None:
    rec = Recorder(T0)
    rec.declare("dead_letters", "counter")
    rec.declare("lat", "trend")
    rec.counter("other", T0 + 1)
    rec.close_all()
    spec = {
        "dead_letters": ["count==0"],
        "dropped_iterations": ["count==0"],  # a k6 built-in counter, never fired
        "lat": ["p(95)<100"],
        "http_req_failed": ["rate<0.01"],
        "never_heard_of": ["count==0"],
    }
    results = {r.metric: r for r in ThresholdEvaluator(parse_thresholds(spec), rec).final()}
    assert results["dead_letters"].passed and results["dead_letters"].observed == 0
    assert results["dropped_iterations"].passed
    for name, detail in (
        ("lat", "no samples"),
        ("http_req_failed", "no samples"),
        ("never_heard_of", "metric never recorded or declared"),
    ):
        assert not results[name].passed and math.isnan(results[name].observed)
        assert results[name].detail == detail


def test_check_live_respects_abort_on_fail_and_delay() -> None:
    rec = Recorder(T0)
    spec = {
        "http_req_duration": [
            {
                "threshold": "p(95)<100",
                "abortOnFail": True,
                "delayAbortEval": "10s",
                "window": "3s",
            },
            "avg<0",  # fails, but does not abort
        ],
        "http_req_failed": [{"threshold": "rate<0.5", "abortOnFail": True}],
    }
    ev = ThresholdEvaluator(parse_thresholds(spec), rec)
    aborts_at: list[tuple[int, list]] = []
    for s in range(30):
        bad = 15 <= s < 18  # a 3-second patch
        for i in range(20):
            at = T0 + s + i / 20
            rec.trend("http_req_duration", 400.0 if bad else 10.0, at)
            rec.rate("http_req_failed", False, at)
        rec.close_seconds(T0 + s + 1)
        found = ev.check_live(elapsed_s=s + 1)
        if found:
            aborts_at.append((s + 1, found))
    assert aborts_at, "the bad patch must demand an abort"
    elapsed, found = aborts_at[0]
    # [13, 16) is the first closed window past the 10 s delay holding a bad second:
    # 1 bad second of 3 is a third of the samples, so its p(95) is 400 ms
    # (and the run so far — 1 bad second of 16 — also has p(95) = 400 ms)
    assert elapsed == 16
    assert sorted(r.scope for r in found) == ["run", "window"]
    assert {r.expression for r in found} == {"p(95)<100"}  # avg<0 fails but never aborts
    (result,) = [r for r in found if r.scope == "window"]
    assert (result.window_start, result.window_end) == (13, 16)
    assert result.abort_on_fail and not result.passed and result.observed == 400.0


def test_check_live_waits_for_delay_abort_eval() -> None:
    rec = Recorder(T0)
    ev = ThresholdEvaluator(
        parse_thresholds(
            {"errs": [{"threshold": "count<1", "abortOnFail": True, "delayAbortEval": "5s"}]}
        ),
        rec,
    )
    rec.counter("errs", T0 + 0.5)  # fails from the first second on
    rec.close_seconds(T0 + 1)
    assert [ev.check_live(e) for e in (1.0, 2.0, 4.99)] == [[], [], []]
    (late,) = ev.check_live(5.0)
    assert (late.scope, late.passed, late.observed) == ("run", False, 1)


def test_check_live_skips_metrics_without_samples() -> None:
    rec = Recorder(T0)
    ev = ThresholdEvaluator(
        parse_thresholds({"http_req_duration": [{"threshold": "p(95)<1", "abortOnFail": True}]}),
        rec,
    )
    assert ev.check_live(3.0) == []


def test_threshold_is_frozen() -> None:
    (th,) = parse_thresholds({"a": ["avg<1"]})
    assert isinstance(th, Threshold)
    with pytest.raises(AttributeError):
        th.metric = "b"  # type: ignore[misc]
