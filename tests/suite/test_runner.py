"""The suite runner on real parts: load against the loopback echo target, the target's
/metrics from a real HTTP server; checks pass, fail, and fail only where metrics are
missing."""

from __future__ import annotations

import socket
from datetime import date

import pytest

from nightly_pipeline.loadgen import ConstantArrivalRate, LoadTest, RunBounds, run_load
from nightly_pipeline.loadgen.scenario import GetPath
from nightly_pipeline.suite import runner
from nightly_pipeline.suite.preflight import TargetUnreachableError
from nightly_pipeline.suite.spec import PROFILES, Check, TestSpec
from nightly_pipeline.testbed.echo import http_server
from nightly_pipeline.testbed.target import Target
from tests.suite.test_sampling import MetricsServer, _exposition

SPEC = TestSpec(
    "99",
    "runner_probe",
    3,
    50,
    (
        Check("http_req_duration", "p(95)<1000", "warn", "fast enough"),
        Check("http_req_failed", "rate==0", "error", "no failed request"),
        Check("messaging_consumer_delivered_total", "count>0", "error", "deliveries counted"),
        Check("messaging_consumer_lag_seconds", "max<1", "warn", "lag < 1 s"),
    ),
    ("latency",),
    "a probe of the runner",
)


class GetLoad:
    """The probe's scenario: GETs at the profile's rate; the target changes its /metrics."""

    def __init__(self, url: str, during=None) -> None:
        self.url, self.during = url, during

    def execute(self, ctx: runner.TestContext):
        if self.during:
            self.during()
        return run_load(
            LoadTest(
                ConstantArrivalRate(rate=ctx.rate, bounds=RunBounds(ctx.duration_s)),
                GetPath("/"),
                self.url,
            )
        )


@pytest.fixture
def echo():
    with http_server() as srv:
        yield srv


@pytest.fixture
def metrics():
    server = MetricsServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _run(tmp_path, echo, metrics_urls, during=None, monkeypatch=None):
    monkeypatch.setitem(runner.IMPLEMENTATIONS, "99", lambda: GetLoad(echo.url, during))
    target = Target("probe", echo.url, "ws://127.0.0.1:1/v1/ws", metrics_urls, ("u",), "p")
    return runner.run_suite_test(
        SPEC,
        PROFILES["ci"],
        target,
        night=date(2026, 11, 20),
        run_id="r1",
        run_dir=tmp_path,
    )


def test_checks_pass_on_a_healthy_target(tmp_path, echo, metrics, monkeypatch) -> None:
    metrics.text = _exposition(10, 0.1)

    def deliveries_grow() -> None:
        metrics.text = _exposition(500, 0.2)

    outcome = _run(tmp_path, echo, {"api": metrics.url}, deliveries_grow, monkeypatch)
    assert [c.passed for c in outcome.checks] == [True, True, True, True], outcome.record.detail
    assert outcome.record.status == "passed"
    assert {r.severity for r in outcome.record.thresholds} == {"warn", "error"}


def test_a_blocking_check_fails_the_test_a_warning_does_not(tmp_path, echo, metrics, monkeypatch):
    metrics.text = _exposition(10, 0.1)

    def lag_spikes_and_nothing_delivered() -> None:
        metrics.text = _exposition(10, 3.0)

    outcome = _run(
        tmp_path, echo, {"api": metrics.url}, lag_spikes_and_nothing_delivered, monkeypatch
    )
    failed = {c.check.metric: c.check.severity for c in outcome.checks if not c.passed}
    assert failed == {
        "messaging_consumer_delivered_total": "error",
        "messaging_consumer_lag_seconds": "warn",
    }
    assert outcome.record.status == "failed" and outcome.blocking_failed
    assert "messaging_consumer_lag_seconds max<1 observed 3 [warn]" in outcome.record.detail


def test_unreadable_metrics_fail_only_the_checks_that_need_them(tmp_path, echo, monkeypatch):
    outcome = _run(tmp_path, echo, {"api": "http://127.0.0.1:9/metrics"}, None, monkeypatch)
    passed = {c.check.metric: c.passed for c in outcome.checks}
    assert passed == {
        "http_req_duration": True,
        "http_req_failed": True,
        "messaging_consumer_delivered_total": False,
        "messaging_consumer_lag_seconds": False,
    }
    assert "unreadable: api" in outcome.record.detail


def test_a_test_without_a_scenario_says_which_are_implemented(tmp_path) -> None:
    target = Target("probe", "http://127.0.0.1:1", "ws://127.0.0.1:1", {}, ("u",), "p")
    with pytest.raises(runner.NotImplementedTestError, match="no scenario yet"):
        runner.run_suite_test(
            SPEC, PROFILES["ci"], target, night=date(2026, 11, 20), run_id="r", run_dir=tmp_path
        )


class DerivingLoad(GetLoad):
    """Computes a ratio from two target counters, as a cache-hit check needs."""

    def derive(self, samples, recorder, at) -> None:
        from nightly_pipeline.suite.sampling import counter_delta

        delivered = counter_delta(samples, "messaging_consumer_delivered_total") or 0.0
        recorder.gauge("delivered_per_request", delivered / 100.0, at)


def test_a_test_can_derive_figures_from_the_targets_samples(tmp_path, echo, metrics, monkeypatch):
    metrics.text = _exposition(0, 0.1)

    def grow() -> None:
        metrics.text = _exposition(50, 0.1)

    spec = TestSpec(
        "98", "derive_probe", 3, 50,
        (Check("delivered_per_request", "value==0.5", "error", "derived"),),
        ("latency",), "",
    )  # fmt: skip
    monkeypatch.setitem(runner.IMPLEMENTATIONS, "98", lambda: DerivingLoad(echo.url, grow))
    target = Target("probe", echo.url, "ws://127.0.0.1:1/v1/ws", {"api": metrics.url}, ("u",), "p")
    outcome = runner.run_suite_test(
        spec, PROFILES["ci"], target, night=date(2026, 11, 20), run_id="r", run_dir=tmp_path
    )
    assert outcome.checks[0].passed, outcome.record.detail


def test_an_unreachable_target_is_refused_before_any_load(tmp_path, monkeypatch) -> None:
    """Nothing listens on the port: an infrastructure error naming the URL and the fix,
    raised before the scenario runs (so no check is judged on 100 % connection errors)."""
    started = []
    monkeypatch.setitem(runner.IMPLEMENTATIONS, "99", lambda: started.append(1) or GetLoad(""))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    target = Target("gone", closed, "ws://127.0.0.1:1/v1/ws", {}, ("u",), "p")
    with pytest.raises(TargetUnreachableError, match=f"nothing answers at {closed}.*fix base_url"):
        runner.run_suite_test(
            SPEC, PROFILES["ci"], target, night=date(2026, 11, 20), run_id="r", run_dir=tmp_path
        )
    assert started == []
