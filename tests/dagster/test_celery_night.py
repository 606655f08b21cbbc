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
import polars as pl
import pytest
import yaml

from nightly_pipeline.automation.instance import open_instance, prepare_instance_dir
from nightly_pipeline.automation.run import NightRun, run_night
from nightly_pipeline.cli import main
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.profiles import PROFILES
from tests.dagster.celery_workers import CeleryCluster, celery_cluster
from tests.dagster.night_rows import metric_names, verdict_names

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
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryCluster]:
    with celery_cluster(tmp_path_factory.mktemp("celery")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, cluster: CeleryCluster) -> Nights:
    """The same night in process, then on the Celery cluster, each in its own home."""
    root = tmp_path_factory.mktemp("celery-night")
    return Nights(_night(root / "in-process", None), _night(root / "on-celery", cluster), cluster)


def _rows(night: Night) -> dict[str, object]:
    """What a night leaves in its store, less what differs between any two runs (ids,
    times, measured values, and the verdict of a warning: Test 02's ``p(95)<50`` flips
    with the machine's load, in process as on Celery; a blocking verdict must not)."""
    store = MetricStore(night.home.store)
    run_id = night.run.run_id
    results = store.recent_results(limit_nights=1).filter(run_id=run_id)
    metrics = store.metrics(since=NIGHT).filter(run_id=run_id)
    thresholds = (
        store.threshold_results(NIGHT)
        .filter(scope="run")
        .with_columns(passed=pl.when(pl.col("severity") == "error").then(pl.col("passed")))
    )
    runs = store.runs(NIGHT).filter(run_id=run_id)
    return {
        "tests": sorted(results.select("test", "status").rows()),
        "metric names": metric_names(metrics),
        "thresholds": sorted(
            thresholds.select("test", "metric", "expression", "severity", "passed").rows(),
            key=str,
        ),
        "checks": sorted(
            (c.test, c.name, c.blocking, c.passed if c.blocking else None) for c in night.run.checks
        ),
        "run": runs.select("profile", "target", "status").rows(),
        "verdicts": verdict_names(store.verdicts(NIGHT)),
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


def _spans(night: Night) -> list[tuple[float, float]]:
    """Each step's (first, last) event time, in start order."""
    spans: dict[str, list[float]] = {}
    for e in _step_events(night):
        spans.setdefault(e.step_key or "", []).append(e.timestamp)
    return sorted((min(t), max(t)) for t in spans.values())


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
    intervals = _spans(nights.celery)
    assert len(intervals) == 2
    (_, first_end), (second_start, _) = intervals
    assert first_end <= second_start, f"steps overlapped: {intervals}"


def test_with_two_slots_the_steps_overlap_on_two_workers(
    tmp_path: Path, cluster: CeleryCluster
) -> None:
    """The control of the test above: the same night with the pool at two slots runs both
    tests at once, one per worker, each with its own platform (``OnDemandPlatform``
    puts the second beside the first), and both pass."""
    home = Home.at(tmp_path / "home")
    config = prepare_instance_dir(home) / "dagster.yaml"
    settings = yaml.safe_load(config.read_text())
    settings["concurrency"]["pools"]["default_limit"] = 2
    config.write_text(yaml.safe_dump(settings))
    night = _night(home.root, cluster)
    assert night.run.success, night.run.error
    (_, first_end), (second_start, _) = _spans(night)
    assert second_start < first_end
    assert {e.dagster_event.pid for e in _step_events(night)} == cluster.worker_pids


def test_celery_without_a_broker_names_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NIGHTLY_CELERY_BROKER", raising=False)
    store = tmp_path / "metrics.duckdb"
    code = main(["--store", str(store), "run", "--profile", "ci", "--executor", "celery"])
    assert code == 2
    assert "--celery-broker URL or $NIGHTLY_CELERY_BROKER" in capsys.readouterr().err


def test_nightly_run_executor_celery_runs_on_the_workers(
    tmp_path: Path,
    cluster: CeleryCluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command line's wiring: ``--executor celery --celery-broker URL`` with the
    backend from ``$NIGHTLY_CELERY_BACKEND``; Test 06 alone, its step on a worker."""
    monkeypatch.setenv("NIGHTLY_CELERY_BACKEND", cluster.broker.result_backend)
    store = tmp_path / "home" / "metrics.duckdb"
    argv = ["--store", str(store), "run", "--profile", "ci", "--tests", "06"]
    argv += ["--night", NIGHT.isoformat(), "--executor", "celery"]
    code = main([*argv, "--celery-broker", cluster.broker.broker])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"steps on the Celery workers of {cluster.broker.broker}" in err
    night = Night(Home.of_store(store), _last_run(Home.of_store(store)))
    (start,) = [e for e in _step_events(night) if e.dagster_event.event_type_value == "STEP_START"]
    assert start.dagster_event.pid in cluster.worker_pids


def _last_run(home: Home) -> NightRun:
    """The NightRun of the home's only suite run, as far as ``_step_events`` reads it."""
    (run_id,) = MetricStore(home.store).runs(NIGHT)["run_id"].to_list()
    return NightRun(NIGHT, run_id, True, ())
