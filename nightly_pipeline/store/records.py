"""Frozen records the store writes.

The store is the last stop of "clients → recorder → summary → thresholds → store": whoever
builds these records has already computed everything, so the records only check the
invariants whose violation would corrupt history (a datetime passed as a night, an unknown
status, a finish before the start). Rows are plain values; the store turns them into DuckDB
rows in bulk.

Timestamps are stored as naive UTC: an aware datetime is converted, a naive one is taken
to be UTC already.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal, get_args

TestStatus = Literal["passed", "failed", "error"]
RunStatus = Literal["running", "succeeded", "failed", "canceled", "crashed"]
ThresholdScope = Literal["run", "window"]
ActivityPhase = Literal[
    "hypothesis_before", "method", "hypothesis_during", "hypothesis_after", "rollback"
]
ActivityKind = Literal["action", "probe"]

TEST_STATUSES: tuple[str, ...] = get_args(TestStatus)
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
THRESHOLD_SCOPES: tuple[str, ...] = get_args(ThresholdScope)
ACTIVITY_PHASES: tuple[str, ...] = get_args(ActivityPhase)
ACTIVITY_KINDS: tuple[str, ...] = get_args(ActivityKind)


def canonical_tags(tags: Mapping[str, object]) -> str:
    """One JSON text per tag set, so equal tag sets compare equal in SQL (``'{}'`` if none)."""
    return json.dumps(
        {str(k): str(v) for k, v in tags.items()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def to_utc_naive(moment: datetime) -> datetime:
    """DuckDB TIMESTAMP has no zone: store UTC wall time."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _check_night(night: object) -> None:
    # datetime is a subclass of date; a datetime night would silently drop its time part.
    if not isinstance(night, date) or isinstance(night, datetime):
        raise ValueError(f"night must be a datetime.date, got {night!r}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One summary value of a test (e.g. ``http_req_duration`` p95 = 87.1 ms)."""

    metric: str
    value: float
    unit: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name("metric", self.metric)


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """One second of one metric: latency columns for trends, ``value`` for gauges/counters."""

    metric: str
    second: int
    tags: Mapping[str, str] = field(default_factory=dict)
    count: int | None = None
    errors: int | None = None
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        _check_name("metric", self.metric)


@dataclass(frozen=True, slots=True)
class ThresholdRow:
    """The verdict of one threshold expression, over the whole run or over one window.
    ``not_measurable``: why the target cannot support it; then ``passed`` is None (not
    judged) and there is no ``observed``."""

    metric: str
    expression: str
    scope: ThresholdScope
    passed: bool | None
    observed: float | None = None
    window_start: float | None = None
    window_end: float | None = None
    severity: str = "error"
    tags: Mapping[str, str] = field(default_factory=dict)
    not_measurable: str | None = None

    def __post_init__(self) -> None:
        _check_name("metric", self.metric)
        _check_name("expression", self.expression)
        _check_choice("scope", self.scope, THRESHOLD_SCOPES)


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    """A chaos test's Chaos Toolkit experiment as its journal ended: the verdict that the
    activities below add up to (``unfinished``: the journal is a stub, ``error`` says why)."""

    title: str
    status: str
    deviated: bool
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _check_name("status", self.status)


@dataclass(frozen=True, slots=True)
class ActivityRow:
    """One activity of the journal, ``seq`` its place in journal order; kept so that a
    night's faults can be placed on its series and its probes read back years later."""

    seq: int
    phase: ActivityPhase
    kind: ActivityKind
    name: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    output_json: str | None = None
    tolerance_met: bool | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        _check_choice("phase", self.phase, ACTIVITY_PHASES)
        _check_choice("kind", self.kind, ACTIVITY_KINDS)
        _check_name("status", self.status)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One execution of the suite (or of one test) for a night and profile."""

    run_id: str
    night: date
    profile: str
    target: str
    started_at: datetime
    versions: Mapping[str, str] = field(default_factory=dict)
    dagster_run_id: str | None = None

    def __post_init__(self) -> None:
        _check_name("run_id", self.run_id)
        _check_night(self.night)
        _check_name("profile", self.profile)

    def versions_json(self) -> str:
        """Component versions (postgres, redis, testbed, ...) as canonical JSON."""
        return canonical_tags(self.versions)


@dataclass(frozen=True, slots=True)
class TestResultRecord:
    """Everything one test produced for one (night, profile): replaced as a unit."""

    __test__ = False  # not a pytest test class, despite the name

    night: date
    profile: str
    test: str
    run_id: str
    status: TestStatus
    started_at: datetime
    finished_at: datetime
    detail: str = ""
    generator_bound: bool = False
    metrics: tuple[MetricRow, ...] = ()
    series: tuple[SeriesRow, ...] = ()
    thresholds: tuple[ThresholdRow, ...] = ()
    load_started_at: datetime | None = None  # wall time of the series' second 0
    experiment: ExperimentRow | None = None  # chaos tests only
    activities: tuple[ActivityRow, ...] = ()

    def __post_init__(self) -> None:
        _check_night(self.night)
        _check_name("profile", self.profile)
        _check_name("test", self.test)
        _check_name("run_id", self.run_id)
        _check_choice("status", self.status, TEST_STATUSES)
        if to_utc_naive(self.finished_at) < to_utc_naive(self.started_at):
            raise ValueError(
                f"{self.test}: finished_at {self.finished_at} is before started_at "
                f"{self.started_at}"
            )
        # Accept lists from callers but keep the record immutable.
        for name in ("metrics", "series", "thresholds", "activities"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.activities and self.experiment is None:
            raise ValueError(f"{self.test}: activities without the experiment they belong to")
        seqs = [a.seq for a in self.activities]
        if len(set(seqs)) != len(seqs):
            raise ValueError(f"{self.test}: two activities share a seq: {sorted(seqs)}")

    @property
    def duration_s(self) -> float:
        """Wall time of the test, as stored in ``test_results.duration_s``."""
        return (to_utc_naive(self.finished_at) - to_utc_naive(self.started_at)).total_seconds()

    @property
    def key(self) -> tuple[date, str, str]:
        """The (night, profile, test) a write replaces."""
        return (self.night, self.profile, self.test)
