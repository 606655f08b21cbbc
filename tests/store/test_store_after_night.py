"""The compaction after a night (automation/after_night.py) on real store files: it
compacts, and when it cannot (the store busy, the file broken) it says so instead of
failing the night; scheduled nights get it from a run-status sensor."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from nightly_pipeline.automation.after_night import (
    compact_after_night,
    make_history_finished_sensor,
)
from nightly_pipeline.automation.suite_runs import CLI_TRIGGER, TRIGGER_TAG
from nightly_pipeline.definitions import defs
from nightly_pipeline.resources import MetricStoreResource
from nightly_pipeline.store import DEFAULT_KEEP_NIGHTS, MetricStore, RetryPolicy
from nightly_pipeline.store.locking import hold_file_lock
from nightly_pipeline.store.paths import lock_path_for
from tests.store.conftest import build_result

FIRST = date(2026, 3, 1)


def _store_with_nights(path: Path, n: int, policy: RetryPolicy | None = None) -> MetricStore:
    store = MetricStore(path, retry=policy)
    for day in range(n):
        store.write_test_result(build_result(FIRST + timedelta(days=day), "t", n_seconds=120))
    return store


def test_after_a_night_old_series_are_compacted_and_it_says_so(store_path: Path) -> None:
    store = _store_with_nights(store_path, DEFAULT_KEEP_NIGHTS + 2)
    said: list[str] = []

    assert compact_after_night(store, said.append)

    assert set(store.series(FIRST, "t", "ci")["resolution_s"]) == {60}
    newest = FIRST + timedelta(days=DEFAULT_KEEP_NIGHTS + 1)
    assert set(store.series(newest, "t", "ci")["resolution_s"]) == {1}
    assert any("downsampling the series of 2 night(s)" in line for line in said)
    assert any("series rows" in line and "bytes" in line for line in said)


def test_a_busy_store_is_reported_not_raised(store_path: Path) -> None:
    impatient = RetryPolicy(timeout_s=0.3, max_attempts=5, initial_backoff_s=0.01)
    store = _store_with_nights(store_path, DEFAULT_KEEP_NIGHTS + 1, impatient)
    before = store_path.read_bytes()
    said: list[str] = []

    with hold_file_lock(
        lock_path_for(store_path), store_path, exclusive=True, budget=impatient.start()
    ):
        assert not compact_after_night(store, said.append)

    assert store_path.read_bytes() == before
    assert len(said) == 1
    assert "store compaction failed, the night is unaffected" in said[0]
    assert "is busy" in said[0] and "nightly store compact" in said[0]
    assert compact_after_night(store, said.append)  # the next night's compaction runs


def test_a_broken_store_file_is_reported_not_raised(store_path: Path) -> None:
    store = _store_with_nights(store_path, 1)
    store_path.write_bytes(b"not a database at all" * 100)
    said: list[str] = []

    assert not compact_after_night(store, said.append)

    assert "not a readable DuckDB metric store" in said[0]
    assert store_path.read_bytes() == b"not a database at all" * 100


def _history_stand_in(instance: dg.DagsterInstance, store_path: Path, *, cli: bool) -> str:
    """A cheap run of a job named ``nightly_history`` (the real one needs nights to
    evaluate), tagged as ``nightly run``'s or as the sensors'; its run id."""

    @dg.asset(name="stand_in_history")
    def stand_in() -> None:
        return None

    job = dg.Definitions(
        assets=[stand_in], jobs=[dg.define_asset_job("nightly_history", selection=[stand_in])]
    ).resolve_job_def("nightly_history")
    trigger = CLI_TRIGGER if cli else "suite-finished"
    return job.execute_in_process(instance=instance, tags={TRIGGER_TAG: trigger}).run_id


def _tick(sensor: dg.SensorDefinition, instance, store_path: Path, cursor):
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"store": MetricStoreResource(path=str(store_path))},
        repository_def=defs.get_repository_def(),
    ) as context:
        return sensor.evaluate_tick(context)


def test_a_scheduled_nights_history_run_ending_compacts_the_store(store_path: Path) -> None:
    """The daemon's path: a real run-status sensor tick on a real test instance."""
    store = _store_with_nights(store_path, DEFAULT_KEEP_NIGHTS + 1)
    sensor = make_history_finished_sensor(dg.DagsterRunStatus.SUCCESS)
    with dg.instance_for_test() as instance:
        cursor = _tick(sensor, instance, store_path, None).cursor  # starts before the runs
        _history_stand_in(instance, store_path, cli=True)
        left = _tick(sensor, instance, store_path, cursor)
        assert "it compacts itself" in left.skip_message
        assert set(store.series(FIRST, "t", "ci")["resolution_s"]) == {1}

        _history_stand_in(instance, store_path, cli=False)
        done = _tick(sensor, instance, store_path, left.cursor)

    assert not done.run_requests
    assert "downsampling the series of 1 night(s)" in done.skip_message
    assert set(store.series(FIRST, "t", "ci")["resolution_s"]) == {60}
    assert {s.name for s in defs.sensors} >= {
        "nightly_history_success_compaction",
        "nightly_history_failure_compaction",
    }
