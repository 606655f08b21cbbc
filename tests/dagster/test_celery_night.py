"""The night's steps under dagster-celery's executor, on two real Celery workers and a
real Redis (broker and result backend): the same store rows as the same night run in
process, the steps run in the workers' processes, and the ``target`` pool still lets
one test run at a time.

Tests 02 and 06 at ci (two steps, so two idle workers could run them at once; two of
the quickest tests at ci): the whole ci night twice would take most of a CI run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import NightRun, run_night
from nightly_pipeline.cli import main
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.profiles import PROFILES
from tests.dagster.celery_workers import CeleryCluster, celery_cluster

NIGHT = date(2026, 11, 19)
pytestmark = pytest.mark.filterwarnings(
    # dagster-celery 0.29 builds its Celery app (and registers its one task) per run and per
    # step submission; Celery 5.7 warns of the second registration of the same task
    "ignore:Task name 'execute_plan' is already registered"
)
TESTS = "02,06"


@dataclass(frozen=True)
class Night:
    home: Home
    run: NightRun


@dataclass(frozen=True)
class Nights:
    in_process: Night
    celery: Night
    cluster: CeleryCluster


def _night(root: Path, cluster: CeleryCluster | None) -> Night:
    home = Home.at(root)
    run = run_night(
        select_tests(TESTS),
        PROFILES["ci"],
        NIGHT,
        target="embedded",
        home=home,
        celery=cluster.broker if cluster else None,
    )
    return Night(home, run)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nights]:
    """The same night in process, then on the Celery cluster, each in its own home."""
    root = tmp_path_factory.mktemp("celery-night")
    with celery_cluster(root / "celery") as cluster:
        in_process = _night(root / "in-process", None)
        on_celery = _night(root / "on-celery", cluster)
        yield Nights(in_process, on_celery, cluster)


def _rows(night: Night) -> dict[str, object]:
    """What a night leaves in its store, less what differs between any two runs (ids,
    times, measured values)."""
    store = MetricStore(night.home.store)
    run_id = night.run.run_id
    results = store.recent_results(limit_nights=1).filter(run_id=run_id)
    metrics = store.metrics(since=NIGHT).filter(run_id=run_id)
    thresholds = store.threshold_results(NIGHT).filter(scope="run")
    runs = store.runs(NIGHT).filter(run_id=run_id)
    return {
        "tests": sorted(results.select("test", "status").rows()),
        "metric names": sorted(set(metrics.select("test", "metric").rows())),
        "thresholds": sorted(thresholds.select("test", "metric", "expression", "passed").rows()),
        "checks": sorted((c.test, c.name, c.passed, c.blocking) for c in night.run.checks),
        "run": runs.select("profile", "target", "status").rows(),
        "verdicts": sorted(store.verdicts(NIGHT).select("test", "metric", "verdict").rows()),
    }


def test_celery_night_writes_the_same_rows_as_in_process(nights: Nights) -> None:
    assert nights.in_process.run.success, nights.in_process.run.error
    assert nights.celery.run.success, nights.celery.run.error
    expected, got = _rows(nights.in_process), _rows(nights.celery)
    assert expected["tests"] == [
        ("02_conversation_crud", "passed"),
        ("06_sustained_login", "passed"),
    ]
    assert expected["checks"], "the night reported no checks"
    for what in expected:
        assert got[what] == expected[what], what


def _step_events(night: Night) -> list[dg.EventLogEntry]:
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
    kinds.add(dg.DagsterEventType.STEP_FAILURE)
    with open_instance(night.home) as instance:
        return [
            e
            for e in instance.all_logs(night.run.run_id)
            if e.dagster_event is not None and e.dagster_event.event_type in kinds
        ]


def test_steps_run_in_the_celery_workers(nights: Nights) -> None:
    events = _step_events(nights.celery)
    starts = [e for e in events if e.dagster_event.event_type == dg.DagsterEventType.STEP_START]
    assert len(starts) == 2
    assert {e.dagster_event.pid for e in starts} <= nights.cluster.worker_pids


def test_target_pool_runs_one_test_at_a_time_on_celery(nights: Nights) -> None:
    """Each step's start-to-end interval ends before the next one starts, although two
    idle workers could have taken both steps at once."""
    spans: dict[str, list[float]] = {}
    for e in _step_events(nights.celery):
        spans.setdefault(e.step_key or "", []).append(e.timestamp)
    intervals = sorted((min(t), max(t)) for t in spans.values())
    assert len(intervals) == 2
    (_, first_end), (second_start, _) = intervals
    assert first_end <= second_start, f"steps overlapped: {intervals}"


def test_celery_without_a_broker_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NIGHTLY_CELERY_BROKER", raising=False)
    store = tmp_path / "metrics.duckdb"
    code = main(["--store", str(store), "run", "--profile", "ci", "--executor", "celery"])
    assert code == 2
    assert "--celery-broker URL or $NIGHTLY_CELERY_BROKER" in capsys.readouterr().err
