"""The suite runner on real parts: load against the loopback echo target, the target's
/metrics from a real HTTP server; checks pass, fail, and fail only where metrics are
missing."""

from __future__ import annotations

import dataclasses
import socket
from datetime import date

import pytest

from nightly_pipeline.loadgen.scenario import GetPath
from nightly_pipeline.suite import runner
from nightly_pipeline.suite.context import ScenarioContext, SuiteTest
from nightly_pipeline.suite.preflight import TargetUnreachableError
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.spec import Check, NoKnobs, TestSpec
from nightly_pipeline.suite.target import Target
from nightly_pipeline.testbed.echo import http_server
from tests.suite.test_sampling import _exposition
from tests.text_server import TextServer


def _check(name: str, metric: str, expr: str, severity: str, plan: str) -> Check:
    return Check(name, on="latency", metric=metric, expr=expr, severity=severity, plan=plan)


SPEC = TestSpec(
    id="99",
    name="runner_probe",
    duration_s=3,
    rate=50,
    knobs=NoKnobs(),
    description="a probe of the runner",
    assets=("latency",),
    checks=(
        _check("fast_enough", "http_req_duration", "p(95)<1000", "warn", "fast enough"),
        _check("no_failed_request", "http_req_failed", "rate==0", "error", "no failed request"),
        _check(
            "deliveries_counted",
            "messaging_consumer_delivered_total",
            "count>0",
            "error",
            "deliveries counted",
        ),
        _check("lag_under_1s", "messaging_consumer_lag_seconds", "max<1", "warn", "lag < 1 s"),
    ),
)


def get_load(during=None):
    """The probe's scenario: GETs at the profile's rate (the target's base URL, the echo
    server); ``during`` changes what the target's /metrics says as the load starts."""

    def scenario(ctx: ScenarioContext[NoKnobs]):
        if during:
            during()
        return ctx.load(GetPath("/"), max_vus=100)

    return scenario


@pytest.fixture
def echo():
    with http_server() as srv:
        yield srv


@pytest.fixture
def metrics():
    server = TextServer("/metrics")
    yield server
    server.close()


def _run(tmp_path, echo, metrics_urls, during=None):
    target = Target("probe", echo.url, "ws://127.0.0.1:1/v1/ws", metrics_urls, ("u",), "p")
    return runner.run_suite_test(
        SuiteTest(SPEC, get_load(during)),
        PROFILES["ci"],
        target,
        night=date(2026, 11, 20),
        run_id="r1",
        run_dir=tmp_path,
    )


def test_checks_pass_on_a_healthy_target(tmp_path, echo, metrics) -> None:
    metrics.text = _exposition(10, 0.1)

    def deliveries_grow() -> None:
        metrics.text = _exposition(500, 0.2)

    outcome = _run(tmp_path, echo, {"api": metrics.url}, deliveries_grow)
    assert [c.passed for c in outcome.checks] == [True, True, True, True], outcome.record.detail
    assert outcome.record.status == "passed"
    assert {r.severity for r in outcome.record.thresholds} == {"warn", "error"}


def test_a_blocking_check_fails_the_test_a_warning_does_not(tmp_path, echo, metrics):
    metrics.text = _exposition(10, 0.1)

    def lag_spikes_and_nothing_delivered() -> None:
        metrics.text = _exposition(10, 3.0)

    outcome = _run(tmp_path, echo, {"api": metrics.url}, lag_spikes_and_nothing_delivered)
    failed = {c.check.name: c.check.severity for c in outcome.checks if not c.passed}
    assert failed == {"deliveries_counted": "error", "lag_under_1s": "warn"}
    assert outcome.record.status == "failed" and outcome.blocking_failed
    assert (
        "lag_under_1s (messaging_consumer_lag_seconds max<1) observed 3 [warn]"
        in outcome.record.detail
    )


def test_unreadable_metrics_fail_only_the_checks_that_need_them(tmp_path, echo):
    outcome = _run(tmp_path, echo, {"api": "http://127.0.0.1:9/metrics"}, None)
    passed = {c.check.name: c.passed for c in outcome.checks}
    assert passed == {
        "fast_enough": True,
        "no_failed_request": True,
        "deliveries_counted": False,
        "lag_under_1s": False,
    }
    assert "unreadable: api" in outcome.record.detail


def delivered_per_request(samples, recorder, at) -> None:
    """Computes a ratio from two target counters, as a cache-hit check needs."""
    from nightly_pipeline.suite.sampling import counter_delta

    delivered = counter_delta(samples, "messaging_consumer_delivered_total") or 0.0
    recorder.gauge("delivered_per_request", delivered / 100.0, at)


def test_a_test_can_derive_figures_from_the_targets_samples(tmp_path, echo, metrics):
    metrics.text = _exposition(0, 0.1)

    def grow() -> None:
        metrics.text = _exposition(50, 0.1)

    derived = _check("half_delivered", "delivered_per_request", "value==0.5", "error", "derived")
    spec = dataclasses.replace(SPEC, id="98", name="derive_probe", checks=(derived,))
    target = Target("probe", echo.url, "ws://127.0.0.1:1/v1/ws", {"api": metrics.url}, ("u",), "p")
    outcome = runner.run_suite_test(
        SuiteTest(spec, get_load(grow), delivered_per_request),
        PROFILES["ci"],
        target,
        night=date(2026, 11, 20),
        run_id="r",
        run_dir=tmp_path,
    )
    assert outcome.checks[0].passed, outcome.record.detail


def test_an_unreachable_target_is_refused_before_any_load(tmp_path) -> None:
    """Nothing listens on the port: an infrastructure error naming the URL and the fix,
    raised before the scenario runs (so no check is judged on 100 % connection errors)."""
    started = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    target = Target("gone", closed, "ws://127.0.0.1:1/v1/ws", {}, ("u",), "p")
    with pytest.raises(TargetUnreachableError, match=f"nothing answers at {closed}.*fix base_url"):
        runner.run_suite_test(
            SuiteTest(SPEC, lambda ctx: started.append(1)),
            PROFILES["ci"],
            target,
            night=date(2026, 11, 20),
            run_id="r",
            run_dir=tmp_path,
        )
    assert started == []
