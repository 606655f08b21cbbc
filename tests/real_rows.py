"""Store rows as a real run writes them, for several profiles on one night.

A ``Recorder`` is fed one request sample after another (no clock: the sample times are
given), ``suite.results.build_test_record`` turns the run into the record the runner
stores, and ``MetricStore.write_test_result`` writes it: the same metric names, tags,
per-second series and statuses a nightly run leaves, without running a load. A run
with ``rss_mb`` also gets what the runner adds from the target's process samples
(``suite.runner.add_target_metrics``: ``process_rss_growth_pct`` for a test that checks
it), the only RSS figure a real run stores: a whole-run metric, in no per-second series.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from nightly_pipeline.loadgen import LoadResult, Recorder, ThresholdResult
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.results import build_test_record
from nightly_pipeline.suite.runner import add_target_metrics
from nightly_pipeline.suite.sampling import ProcessSample, Samples

RATE = 10
"""Requests recorded per second of a run."""


@dataclass(frozen=True)
class Run:
    """One test at one profile: how long its load ran and what it measured."""

    profile: str
    test: str
    seconds: int
    latency_ms: float
    """Every request's duration: the run's p50, p95 and p99 alike."""
    failed: bool = False
    """A blocking threshold failed (the test's status is 'failed')."""
    failing_every: int = 0
    """Every n-th request of a second fails (``http_req_failed``); 0: none."""
    rss_mb: tuple[float, ...] = ()
    """The api process's RSS sampled once a second, as the runner's sampler reads it."""


def load_result(run: Run) -> LoadResult:
    """A finished load of ``run.seconds`` seconds at ``RATE`` requests a second."""
    recorder = Recorder(run_start=0.0)
    for second in range(run.seconds):
        for i in range(RATE):
            at = second + i / RATE
            recorder.trend("http_req_duration", run.latency_ms, at)
            recorder.counter("http_reqs", at)
            failing = run.failing_every > 0 and i % run.failing_every == 0
            recorder.rate("http_req_failed", failing, at)
    recorder.close_all(float(run.seconds))
    if run.rss_mb:  # after the load is closed, as the runner adds it: a whole-run figure
        spec = next(t.spec for t in TESTS if t.spec.key == run.test)
        points = [ProcessSample(float(s), mb, 0.0, 0) for s, mb in enumerate(run.rss_mb)]
        samples = Samples(processes={"api": points})
        add_target_metrics(recorder, spec, samples, float(run.seconds))
    threshold = ThresholdResult(
        metric="http_req_duration",
        tags={},
        expression="p(95)<100",
        scope="run",
        passed=not run.failed,
        observed=run.latency_ms,
        selector="http_req_duration",
    )
    return LoadResult(
        recorder=recorder,
        thresholds=[threshold],
        counts={"requests": run.seconds * RATE},
        aborted=None,
        scheduling_lag_p99_ms=1.0,
        generator_bound=False,
    )


def write_run(store: MetricStore, night: date, run: Run) -> None:
    """``run`` stored for ``night`` as the suite's runner stores a test."""
    started = datetime(night.year, night.month, night.day, 2, 10, tzinfo=UTC)
    record = build_test_record(
        load_result(run),
        night=night,
        profile=run.profile,
        test=run.test,
        run_id=f"{run.profile}-{night.isoformat()}",
        started_at=started,
        finished_at=started + timedelta(seconds=run.seconds),
    )
    store.write_test_result(record)


SOAK = "01_message_soak"
CI_MS, SMOKE_MS = 40.0, 80.0
"""The soak's latency at each profile: smoke's is twice ci's, every night."""


def two_profile_history(
    store: MetricStore, first: date, nights: int, *, ci_step: date, failed_on: date | None = None
) -> None:
    """``nights`` nights of the soak at ci and smoke, 3 % noise (seeded). From ``ci_step``
    the ci run is 25 % slower, smoke unchanged; on ``failed_on`` both runs failed."""
    rng = random.Random(11)
    for n in range(nights):
        night = first + timedelta(days=n)
        for profile, base in (("ci", CI_MS), ("smoke", SMOKE_MS)):
            step = 1.25 if profile == "ci" and night >= ci_step else 1.0
            latency = round(base * step * rng.gauss(1.0, 0.03), 3)
            run = Run(profile, SOAK, seconds=2, latency_ms=latency, failed=night == failed_on)
            write_run(store, night, run)
