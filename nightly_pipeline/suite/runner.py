"""Run one nightly test against a target and judge it: the test's scenario drives the
load; the sampler watches the target's /metrics and processes meanwhile; what the target
reported (lags, dead letters, denials, RSS growth) joins the engine's recorder; every
check of the spec is evaluated the same way, whatever the profile.

A check whose metric could not be read fails with "no samples" and the outcome names the
unreadable endpoints: only the checks that need them fail. A check the target cannot
support at all (memory on a deployed platform whose ``/metrics`` lacks
``process_resident_memory_bytes``: ``suite.memory``) is "not measurable on this target",
with the reason: neither passed nor failed, and it does not fail the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from nightly_pipeline.loadgen import Recorder, ThresholdResult
from nightly_pipeline.loadgen.thresholds import (
    NOT_MEASURABLE,
    ThresholdEvaluator,
    not_measurable,
    parse_selector,
    parse_thresholds,
)
from nightly_pipeline.store import TestResultRecord
from nightly_pipeline.suite.context import ScenarioContext, SuiteTest
from nightly_pipeline.suite.datastores import DatastoreSampler
from nightly_pipeline.suite.datastores import addresses as datastore_addresses
from nightly_pipeline.suite.memory import memory_growth
from nightly_pipeline.suite.preflight import ensure_reachable
from nightly_pipeline.suite.profiles import Profile
from nightly_pipeline.suite.progress import Watch
from nightly_pipeline.suite.results import (
    JOURNAL,
    activity_rows,
    experiment_row,
    metric_rows,
    read_journal,
    series_rows,
    threshold_rows,
    wall_time_of,
)
from nightly_pipeline.suite.sampling import (
    Sampler,
    Samples,
    counter_delta,
    gauge_max,
    labelled_growth,
    unreadable,
)
from nightly_pipeline.suite.spec import Check, TestSpec
from nightly_pipeline.suite.target import Target


@dataclass(frozen=True)
class CheckOutcome:
    check: Check
    passed: bool
    observed: float
    detail: str
    not_measurable: str = ""
    """Why the target cannot support this check; set, it is a visible skip (``passed``
    False, ``failed`` False)."""

    @property
    def failed(self) -> bool:
        return not self.passed and not self.not_measurable


@dataclass(frozen=True)
class TestOutcome:
    __test__ = False

    spec: TestSpec
    record: TestResultRecord
    checks: tuple[CheckOutcome, ...]
    unreadable: Mapping[str, str] = field(default_factory=dict)

    @property
    def blocking_failed(self) -> bool:
        return blocking_failed(self.checks)


def blocking_failed(checks: tuple[CheckOutcome, ...]) -> bool:
    return any(c.failed and c.check.severity == "error" for c in checks)


def add_target_metrics(
    recorder: Recorder,
    spec: TestSpec,
    samples: Samples,
    at: float,
    metrics_urls: Mapping[str, str] | None = None,
    note: Callable[[str, str], None] = lambda metric, line: None,
) -> dict[str, str]:
    """What the target reported during the run, as metrics the checks can read; returns
    the metrics this target cannot offer, each with the reason. ``note(metric, line)``
    gets what lies behind a figure (which process grew, from what to what), for a failing
    check's detail.

    ``*_total`` counters become their growth over the run (per label set when a check
    selects labels: ``storage_errors_total{type:TimeoutError}``, a series first seen
    mid-run counting from zero); other platform metrics their maximum;
    ``process_rss_growth_pct`` the largest post-warm-up growth of any process (sampled
    by pid, or read from ``metrics_urls``' ``process_resident_memory_bytes``).
    """
    unsupported: dict[str, str] = {}
    for selector in sorted({c.metric for c in spec.checks}):
        name, tags, _ = parse_selector(selector)
        labels = dict(tags)
        if name == "process_rss_growth_pct":
            memory = memory_growth(samples, metrics_urls or {})
            if memory.growth_pct is not None:
                recorder.gauge(name, memory.growth_pct, at)
                for line in memory.describe():
                    note(name, line)
            elif memory.not_measurable:
                unsupported[name] = memory.not_measurable
        elif name.endswith("_total"):
            delta = (
                labelled_growth(samples, name, **labels) if labels else counter_delta(samples, name)
            )
            if delta is not None:
                recorder.counter(name, at, value=delta, tags=labels or None)
        elif name.startswith(("messaging_", "ws_", "storage_", "auth_")):
            peak = gauge_max(samples, name, **labels)
            if peak is not None:
                recorder.gauge(name, peak, at, labels or None)
    return unsupported


def judge(
    spec: TestSpec,
    recorder: Recorder,
    evidence: Mapping[str, Sequence[str]] | None = None,
    unsupported: Mapping[str, str] | None = None,
) -> tuple[tuple[CheckOutcome, ...], list[ThresholdResult]]:
    """Every check of ``spec`` over the whole run; the outcomes and the raw results. A
    failing check's detail carries the scenario's ``evidence`` for its metric; a check
    on a metric in ``unsupported`` (name -> reason) is not measurable on this target."""
    results = ThresholdEvaluator(parse_thresholds(spec.thresholds()), recorder).final()
    results = not_measurable(results, unsupported or {})
    by_key: dict[tuple[str, str], list[ThresholdResult]] = {}
    for r in results:
        by_key.setdefault((r.selector, r.expression), []).append(r)
    outcomes = []
    for check in spec.checks:
        found = by_key.get((check.metric, check.expr), [])
        passed = bool(found) and all(r.passed for r in found)
        observed = found[0].observed if found else float("nan")
        detail = "; ".join(r.detail for r in found if r.detail)
        seen = (evidence or {}).get(parse_selector(check.metric)[0], ())
        skipped = next((r.not_measurable for r in found if r.not_measurable), "")
        if skipped:
            outcomes.append(CheckOutcome(check, False, float("nan"), skipped, skipped))
            continue
        if not passed and seen:
            detail = "; ".join(filter(None, (detail, *seen)))
        outcomes.append(CheckOutcome(check, passed, observed, detail))
    return tuple(outcomes), results


def describe_failures(checks: tuple[CheckOutcome, ...], missing: Mapping[str, str]) -> str:
    parts = [
        f"{c.check.name} ({c.check.threshold}) observed {c.observed:g} [{c.check.severity}]"
        + (f" ({c.detail})" if c.detail else "")
        for c in checks
        if c.failed
    ]
    parts += [
        f"{c.check.name} ({c.check.threshold}): {NOT_MEASURABLE}: {c.not_measurable}"
        for c in checks
        if c.not_measurable
    ]
    if missing:
        parts.append("unreadable: " + ", ".join(sorted(missing)))
    return "; ".join(parts)


def run_suite_test(
    test: SuiteTest,
    profile: Profile,
    target: Target,
    *,
    night: date,
    run_id: str,
    run_dir: Path,
    progress: Callable[[str], None] = lambda _: None,
    watch: Watch = lambda _: None,
    chaos_ledger: Path | None = None,
) -> TestOutcome:
    """Run ``test`` at ``profile`` against ``target``; the outcome holds the store record.
    ``progress`` gets lines for the log, ``watch`` the figures of each second;
    ``chaos_ledger`` records injected faults (default: in ``run_dir``)."""
    spec = test.spec
    ensure_reachable(target)
    started = datetime.now(UTC)
    ctx = ScenarioContext(spec, profile, target, run_dir, progress, watch, chaos_ledger)
    stores = DatastoreSampler(datastore_addresses(target))
    for line in stores.where.skipped:
        progress(f"{spec.key}: {line}")
    with Sampler(target.metrics_urls, target.pids) as sampler, stores:
        result = test.scenario(ctx)
    recorder = result.recorder
    at = time.perf_counter()
    unsupported = add_target_metrics(
        recorder, spec, sampler.samples, at, target.metrics_urls, result.add_evidence
    )
    stores.record(recorder)
    if test.derive is not None:
        test.derive(sampler.samples, recorder, at)
    checks, results = judge(spec, recorder, result.evidence, unsupported)
    missing = unreadable(sampler.samples)
    severity = {(c.check.metric, c.check.expr): c.check.severity for c in checks}
    journal = read_journal(run_dir / JOURNAL, written_since=started)  # chaos tests only
    record = TestResultRecord(
        night=night,
        profile=profile.name,
        test=spec.key,
        run_id=run_id,
        status="failed" if blocking_failed(checks) or result.aborted else "passed",
        started_at=started,
        finished_at=datetime.now(UTC),
        detail=describe_failures(checks, missing),
        generator_bound=result.generator_bound,
        metrics=tuple(metric_rows(result)),
        series=tuple(series_rows(result)),
        thresholds=tuple(threshold_rows(results, severity_of=severity)),
        load_started_at=wall_time_of(recorder.run_start),
        experiment=experiment_row(journal) if journal is not None else None,
        activities=activity_rows(journal) if journal is not None else (),
    )
    return TestOutcome(spec, record, checks, missing)
