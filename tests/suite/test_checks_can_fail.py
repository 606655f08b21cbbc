"""Every check of every catalog test can fail, and can pass: a check that cannot fail
proves nothing, so each one is fed a value of its metric on the wrong side of its bound
and one on the right side, and judged by the runner's own ``judge``.

The violating and satisfying values come from the parsed threshold (aggregation,
operator, bound); the metric's kind is the one its recorder uses (``KINDS``). No
platform: the real faults are in the per-test modules.
"""

from __future__ import annotations

import math

import pytest

from nightly_pipeline.loadgen import Recorder
from nightly_pipeline.loadgen.metrics_stats import COUNTER, GAUGE, RATE, TREND
from nightly_pipeline.loadgen.thresholds import Expression, parse_expression, parse_selector
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.runner import CheckOutcome, add_target_metrics, judge
from nightly_pipeline.suite.sampling import ProcessSample, Samples, Scrape
from nightly_pipeline.suite.spec import Check, TestSpec

KINDS: dict[str, str] = {
    # the load engine's VUs and the messaging load (suite/messaging_load.py)
    "http_req_duration": TREND,
    "http_req_failed": RATE,  # true = failed
    "delivery_lost": COUNTER,
    "delivery_duplicated": COUNTER,
    "delivery_corrupted": COUNTER,
    "ws_disconnects": COUNTER,
    "e2e_delivery_ms": TREND,
    # the scenarios and their derive() (suite/scenarios/*.py)
    "foreign_access_allowed": COUNTER,
    "participant_cache_hit_ratio": GAUGE,
    "invalidation_delay_ms": TREND,
    "stale_reads": COUNTER,
    "hit_ratio_recovery_s": GAUGE,
    "login_success": RATE,  # true = logged in
    "auth_token_generation_ms": TREND,
    "redis_pool_utilization": GAUGE,
    "storage_cache_hit_ratio": GAUGE,
    "storage_breaker_opens": COUNTER,
    "storage_retry_ratio": GAUGE,
    # the chaos tests (suite/chaos_run.py and their modules)
    "time_to_recover_s": GAUGE,
    "pel_reclaim_gap": GAUGE,
    "pel_at_kill": GAUGE,
    "published_after_heal": COUNTER,
    "processes_crashed": COUNTER,
    "fault_errors_not_503": COUNTER,
    "readyz_unnamed": COUNTER,
    # Test 13 (suite/scenarios/13_migration_under_load.py)
    "migration_p95_ratio": GAUGE,
    "migration_duration_s": GAUGE,
    # Test 12's isolation and sockets (suite/scenarios/12_multi_user_conversation.py)
    "cross_conversation_leaks": COUNTER,
    "ws_sockets_missing": GAUGE,
    # Test 14's heartbeats and frame linearity (suite/scenarios/14_ws_longevity.py)
    "ws_missed_pongs": COUNTER,
    "ws_ping_rtt_ms": TREND,
    "frame_growth_residual_pct": GAUGE,
}
TARGET_KINDS: dict[str, str] = {
    # the runner's add_target_metrics, from the target's /metrics and processes
    "messaging_dispatch_lag_seconds": GAUGE,
    "messaging_consumer_lag_seconds": GAUGE,
    "messaging_outbox_dead_total": COUNTER,
    "sanctum_security_denied_total": COUNTER,
    "messaging_conversation_version_conflicts_total": COUNTER,
    "messaging_payload_rejects_total": COUNTER,
    "ws_overload_total": COUNTER,
    "process_rss_growth_pct": GAUGE,
    "messaging_dispatch_dlq_total": COUNTER,
    "storage_errors_total": COUNTER,
    "storage_circuit_breaker_transitions_total": COUNTER,
    "ws_heartbeat_terminate_total": COUNTER,
}
RATE_SAMPLES = 10_000  # resolution 1e-4: enough for "rate>0.999"
TREND_SAMPLES = 20
AT = 1.0

CHECKS = [(test.spec, check) for test in TESTS for check in test.spec.checks]
TAGGED = [(spec, check) for spec, check in CHECKS if parse_selector(check.metric)[1]]


def _id(case: tuple[TestSpec, Check]) -> str:
    spec, check = case
    return f"{spec.id}-{check.name}"


def _kind(check: Check) -> str:
    name = parse_selector(check.metric)[0]
    return {**KINDS, **TARGET_KINDS}[name]


def _margin(expr: Expression) -> float:
    """How far from the bound the test values sit: half the bound, kept inside 0..1 for
    a ratio's bound (``rate>0.999`` is tested at 0.9985 and 0.9995, ``max<0.8`` at 0.9)."""
    b = expr.bound
    if 0 < b < 1:
        return min(b, 1 - b) / 2
    return abs(b) / 2 if b else 1.0


def violating(expr: Expression) -> float:
    """A value of the aggregation on the failing side of the bound; never below 0 for a
    bound of 0 or more (``count>0`` is violated by a count of 0, not of -1)."""
    b, m = expr.bound, _margin(expr)
    below = max(b - m, 0.0) if b >= 0 else b - m
    return {"<": b + m, "<=": b + m, ">": below, ">=": below, "==": b + 1, "!=": b}[expr.op]


def satisfying(expr: Expression) -> float:
    """A value of the aggregation on the passing side of the bound."""
    b, m = expr.bound, _margin(expr)
    return {"<": b - m, "<=": b, ">": b + m, ">=": b, "==": b, "!=": b + 1}[expr.op]


def record(rec: Recorder, kind: str, name: str, value: float, tags: dict[str, str]) -> None:
    """Samples whose aggregation (p(N), count, rate, value or max) comes out as ``value``.

    A value the metric cannot take (a negative count or duration, a share outside 0..1)
    is an error: a check violated only by such values is a tautology.
    """
    assert kind == GAUGE or value >= 0, f"a {kind} cannot be {value:g}"
    if kind == TREND:
        for _ in range(TREND_SAMPLES):
            rec.trend(name, value, AT, tags)
    elif kind == COUNTER:
        rec.counter(name, AT, value=value, tags=tags)
    elif kind == RATE:
        assert value <= 1.0, f"a rate cannot be {value:g}"
        true = round(value * RATE_SAMPLES)
        for i in range(RATE_SAMPLES):
            rec.rate(name, i < true, AT, tags)
    else:
        rec.gauge(name, value, AT, tags)


def _judged(spec: TestSpec, check: Check, value: float, tags: dict[str, str]) -> CheckOutcome:
    name = parse_selector(check.metric)[0]
    rec = Recorder(0.0)
    record(rec, _kind(check), name, value, tags)
    return _outcome(spec, check, rec)


def _outcome(spec: TestSpec, check: Check, rec: Recorder) -> CheckOutcome:
    outcomes, _ = judge(spec, rec)
    return next(o for o in outcomes if o.check == check)


def test_every_check_metric_has_a_known_kind() -> None:
    names = {parse_selector(c.metric)[0] for _, c in CHECKS}
    assert names == set(KINDS) | set(TARGET_KINDS)


@pytest.mark.parametrize("case", CHECKS, ids=_id)
def test_a_violating_value_fails_the_check(case) -> None:
    spec, check = case
    expr = parse_expression(check.expr)
    value = violating(expr)
    outcome = _judged(spec, check, value, dict(parse_selector(check.metric)[1]))
    assert not outcome.passed, f"{check.name} ({check.threshold}) passes at {value:g}"
    assert outcome.observed == pytest.approx(value, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("case", CHECKS, ids=_id)
def test_a_satisfying_value_passes_the_check(case) -> None:
    spec, check = case
    expr = parse_expression(check.expr)
    value = satisfying(expr)
    outcome = _judged(spec, check, value, dict(parse_selector(check.metric)[1]))
    assert outcome.passed, f"{check.name} ({check.threshold}) fails at {value:g}: {outcome}"
    assert outcome.observed == pytest.approx(value, rel=1e-3, abs=1e-9)


@pytest.mark.parametrize("case", CHECKS, ids=_id)
def test_a_metric_never_recorded_fails_the_check(case) -> None:
    """A scenario that recorded nothing must not pass on no data: NaN, failed."""
    spec, check = case
    outcome = _outcome(spec, check, Recorder(0.0))
    assert not outcome.passed
    assert math.isnan(outcome.observed)


@pytest.mark.parametrize("case", TAGGED, ids=_id)
def test_a_tagged_check_ignores_violating_samples_of_other_tags(case) -> None:
    """``http_req_duration{name:post_message}`` judges posts only: slow untagged or
    differently tagged requests do not fail it; the same slow samples tagged do."""
    spec, check = case
    name, tags = parse_selector(check.metric)[0], dict(parse_selector(check.metric)[1])
    expr = parse_expression(check.expr)
    other = {k: f"not-{v}" for k, v in tags.items()}
    rec = Recorder(0.0)
    record(rec, _kind(check), name, satisfying(expr), tags)
    record(rec, _kind(check), name, violating(expr), {})
    record(rec, _kind(check), name, violating(expr), other)
    outcome = _outcome(spec, check, rec)
    assert outcome.passed, outcome
    assert outcome.observed == pytest.approx(satisfying(expr), rel=1e-3)

    if _kind(check) == COUNTER and expr.op in (">", ">="):
        return  # a count only grows: no later sample makes "count>0" false again
    record(rec, _kind(check), name, violating(expr), tags)
    assert not _outcome(spec, check, rec).passed


def _target_samples(name: str) -> Samples:
    """Two scrapes where ``name`` grows 0 → 3, and an API process whose RSS grows."""
    scrapes = [Scrape(float(t), {"api": {(name, ()): 3.0 * t}}, {}) for t in (0, 1)]
    rss = [ProcessSample(float(t), 100.0 + t, 0.0, 0) for t in range(10)]
    return Samples(scrapes=scrapes, processes={"api": rss})


@pytest.mark.parametrize(
    "case", [c for c in CHECKS if parse_selector(c[1].metric)[0] in TARGET_KINDS], ids=_id
)
def test_target_metrics_are_recorded_by_the_runner_as_the_kind_assumed_here(case) -> None:
    spec, check = case
    name = parse_selector(check.metric)[0]
    rec = Recorder(0.0)
    add_target_metrics(rec, spec, _target_samples(name), AT)
    assert rec.kind(name) == TARGET_KINDS[name]


def test_a_failing_check_names_the_scenarios_evidence_and_a_passing_one_does_not() -> None:
    spec, check = next((s, c) for s, c in CHECKS if c.metric == "delivery_lost")
    rec = Recorder(0.0)
    evidence = {"delivery_lost": ["message m1 never reached alice#0"]}
    rec.counter("delivery_lost", AT, value=1.0)
    failing = next(o for o in judge(spec, rec, evidence)[0] if o.check == check)
    assert not failing.passed and "message m1 never reached alice#0" in failing.detail
    rec = Recorder(0.0)
    rec.counter("delivery_lost", AT, value=0.0)
    passing = next(o for o in judge(spec, rec, evidence)[0] if o.check == check)
    assert passing.passed and "m1" not in passing.detail
