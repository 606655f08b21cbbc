"""Schedules, the target-version sensor and the suite-finished sensors, evaluated with
Dagster's test contexts (and, for the run-status sensors, real runs on a test instance)."""

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime

import dagster as dg
import pytest

from nightly_pipeline.assets.history import TEST_ASSETS
from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.automation.schedules import (
    SCHEDULE_PROFILE_ENV,
    make_nightly_suite_schedule,
    scheduled_cron,
    scheduled_profile,
)
from nightly_pipeline.automation.sensors import (
    make_suite_finished_sensor,
    make_target_version_sensor,
)
from nightly_pipeline.definitions import defs
from nightly_pipeline.resources import MetricStoreResource, TargetVersionResource
from nightly_pipeline.store import MetricStore, RunRecord
from nightly_pipeline.suite.errors import ConfigurationError, SelectionError
from tests.dagster.ticks import SensorTicks


def test_every_job_schedule_and_sensor_resolves() -> None:
    assert {j.name for j in defs.resolve_all_job_defs()} >= {
        "engine_selfcheck_job",
        "nightly_suite",
        "nightly_history",
        "baseline_snapshot_job",
    }
    for name in ("nightly_suite_0210_utc", "baseline_snapshot_sunday"):
        assert defs.resolve_schedule_def(name)
    for name in (
        "run_failure_alert",
        "regression_alert",
        "target_version_change",
        "nightly_suite_succeeded",
        "nightly_suite_failed",
        "nightly_suite_canceled",
    ):
        assert defs.resolve_sensor_def(name)


def _tick(schedule: str | dg.ScheduleDefinition, when: datetime) -> list[dg.RunRequest]:
    """The run requests of one tick at ``when``, of the Definitions' schedule of that name
    or of the schedule given (resolved against the Definitions' jobs, as the daemon does)."""
    if isinstance(schedule, str):
        schedule = defs.resolve_schedule_def(schedule)
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(  # exited: it opens the instance from its ref
            instance=instance,
            scheduled_execution_time=when,
            repository_def=defs.get_repository_def(),
        ) as context,
    ):
        return list(schedule.evaluate_tick(context).run_requests or [])


def _profile_config(name: str) -> dict:
    return {"resources": {"profile": {"config": {"name": name}}}}


def _assert_runs_at(request: dg.RunRequest, profile: str) -> None:
    """The request configures the profile resource, tags the run with it, and its run
    config is one the nightly_suite job accepts."""
    assert request.run_config == _profile_config(profile)
    assert request.tags["nightly/profile"] == profile
    job = defs.resolve_job_def("nightly_suite")
    assert dg.validate_run_config(job, request.run_config)["resources"]["profile"] == {
        "config": {"name": profile}
    }


def test_the_suite_runs_at_0210_utc_for_the_night_that_just_ended() -> None:
    schedule = defs.resolve_schedule_def("nightly_suite_0210_utc")
    assert schedule.cron_schedule == "10 2 * * *"
    assert schedule.execution_timezone == "UTC"
    (request,) = _tick("nightly_suite_0210_utc", datetime(2026, 11, 24, 2, 10, tzinfo=UTC))
    assert request.partition_key == "2026-11-23"
    assert request.run_key == "2026-11-23"


NIGHT_0210 = datetime(2026, 11, 24, 2, 10, tzinfo=UTC)


def test_the_scheduled_night_runs_the_nightly_profile_by_default() -> None:
    """Not the profile resource's default (smoke): the run config names the profile."""
    schedule = make_nightly_suite_schedule()
    assert schedule.name == "nightly_suite_0210_utc"
    (request,) = _tick(schedule, NIGHT_0210)
    assert request.partition_key == "2026-11-23"
    _assert_runs_at(request, "nightly")


def test_the_scheduled_night_runs_the_profile_chosen() -> None:
    schedule = make_nightly_suite_schedule("ci")
    assert (schedule.name, schedule.cron_schedule) == ("nightly_suite_0210_utc", "10 2 * * *")
    (request,) = _tick(schedule, NIGHT_0210)
    assert request.partition_key == "2026-11-23"
    _assert_runs_at(request, "ci")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "nightly"),
        ({SCHEDULE_PROFILE_ENV: ""}, "nightly"),
        ({SCHEDULE_PROFILE_ENV: "smoke"}, "smoke"),
        ({SCHEDULE_PROFILE_ENV: " ci "}, "ci"),
    ],
)
def test_the_deployment_chooses_the_scheduled_profile(env: dict, expected: str) -> None:
    assert scheduled_profile(env) == expected


def test_an_unknown_scheduled_profile_is_refused_with_the_valid_names() -> None:
    valid = r"'weekly'; valid: ci, smoke, nightly"
    with pytest.raises(SelectionError, match=rf"\$NIGHTLY_SCHEDULE_PROFILE: .*{valid}"):
        scheduled_profile({SCHEDULE_PROFILE_ENV: "weekly"})
    with pytest.raises(SelectionError, match=valid):
        make_nightly_suite_schedule("weekly")  # type: ignore[arg-type]
    with pytest.raises(SelectionError, match=valid):
        make_target_version_sensor(profile="weekly")  # type: ignore[arg-type]


def test_the_deployment_moves_the_night_with_a_cron_string() -> None:
    assert scheduled_cron({}) == "10 2 * * *"
    assert scheduled_cron({"NIGHTLY_SCHEDULE_CRON": " "}) == "10 2 * * *"
    assert scheduled_cron({"NIGHTLY_SCHEDULE_CRON": "30 23 * * 1-5"}) == "30 23 * * 1-5"
    schedule = make_nightly_suite_schedule(cron="30 23 * * 1-5")
    assert schedule.cron_schedule == "30 23 * * 1-5"
    with pytest.raises(ConfigurationError, match=r"NIGHTLY_SCHEDULE_CRON='at two'.*five fields"):
        scheduled_cron({"NIGHTLY_SCHEDULE_CRON": "at two"})


_LOAD = """
import json
from datetime import UTC, datetime
import dagster as dg
from nightly_pipeline.definitions import defs
with dg.instance_for_test() as instance:
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 24, 2, 10, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    (request,) = defs.resolve_schedule_def("nightly_suite_0210_utc").evaluate_tick(
        context
    ).run_requests
print(json.dumps(request.run_config))
"""


@pytest.mark.parametrize(
    ("value", "profile"), [(None, "nightly"), ("smoke", "smoke"), ("weekly", None)]
)
def test_the_code_location_loads_the_scheduled_profile_from_the_environment(
    value: str | None, profile: str | None
) -> None:
    """definitions.py, the entry point, reads $NIGHTLY_SCHEDULE_PROFILE: a fresh process
    loads the code location as Dagster would, and an unknown name fails the load."""
    env = {k: v for k, v in os.environ.items() if k != SCHEDULE_PROFILE_ENV}
    if value is not None:
        env[SCHEDULE_PROFILE_ENV] = value
    done = subprocess.run(
        [sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True, timeout=120
    )
    if profile is None:
        assert done.returncode != 0
        assert "unknown profile 'weekly'; valid: ci, smoke, nightly" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.splitlines()[-1]) == _profile_config(profile)


def test_the_snapshot_runs_on_sundays_for_the_week_that_ended() -> None:
    schedule = defs.resolve_schedule_def("baseline_snapshot_sunday")
    assert schedule.cron_schedule == "0 6 * * 0"
    (request,) = _tick("baseline_snapshot_sunday", datetime(2026, 11, 22, 6, 0, tzinfo=UTC))
    assert request.partition_key == "2026-11-15"  # the week Sunday 15th to Saturday 21st


@pytest.mark.parametrize(
    ("sensor", "profile"),
    [(make_target_version_sensor(), "nightly"), (make_target_version_sensor(profile="ci"), "ci")],
    ids=["default", "chosen"],
)
def test_a_new_target_version_requests_a_suite_run(
    version_server, sensor: dg.SensorDefinition, profile: str
) -> None:
    """At the scheduled profile: a version change triggers the same kind of night."""
    resources = {"target_version": TargetVersionResource(url=version_server.url)}
    cursor = None

    def tick():
        nonlocal cursor
        with dg.build_sensor_context(
            cursor=cursor, resources=resources, repository_def=defs.get_repository_def()
        ) as context:
            result = sensor.evaluate_tick(context)
        cursor = result.cursor
        return result

    first = tick()
    assert not first.run_requests and "first version seen: 1.0.0" in first.skip_message
    assert not tick().run_requests
    version_server.version = "1.1.0"
    (request,) = tick().run_requests
    assert request.tags["nightly/version"] == "1.1.0"
    assert request.run_key == "version-1.1.0"
    _assert_runs_at(request, profile)
    assert not tick().run_requests  # remembered


def test_version_sensor_skips_without_a_url_or_when_unreachable() -> None:
    sensor = make_target_version_sensor()
    none = sensor.evaluate_tick(
        dg.build_sensor_context(resources={"target_version": TargetVersionResource()})
    )
    assert "no target version URL" in none.skip_message
    down = sensor.evaluate_tick(
        dg.build_sensor_context(
            resources={"target_version": TargetVersionResource(url="http://127.0.0.1:9/version")}
        )
    )
    assert "unreachable" in down.skip_message


# -- the suite and history jobs, and the sensors between them -----------------------------

NIGHT = "2026-11-20"
HISTORY_KEYS = {dg.AssetKey("regressions"), dg.AssetKey("nightly_report")}


def test_the_suite_job_runs_the_tests_and_the_history_job_the_verdicts_and_report() -> None:
    suite = defs.resolve_job_def("nightly_suite").asset_layer.selected_asset_keys
    history = defs.resolve_job_def("nightly_history").asset_layer.selected_asset_keys
    assert suite == {key for asset in TEST_ASSETS for key in asset.keys}
    assert not suite & HISTORY_KEYS
    assert history == HISTORY_KEYS
    for name in ("nightly_suite", "nightly_history"):
        assert defs.resolve_job_def(name).partitions_def == NIGHTS


def _run_stand_in(
    instance: dg.DagsterInstance, name: str, store_path, *, passed: bool, writes_row: bool
) -> dg.ExecuteInProcessResult:
    """Run a cheap stand-in for the real suite (which needs the target) for ``NIGHT``: one
    nightly asset with a blocking check, writing its store row under the Dagster run id
    as the suite assets do, in a job named ``name``."""

    @dg.asset(
        name="stand_in_test",
        partitions_def=NIGHTS,
        check_specs=[dg.AssetCheckSpec("no_loss", asset="stand_in_test", blocking=True)],
    )
    def stand_in(
        context: dg.AssetExecutionContext, store: MetricStoreResource
    ) -> dg.MaterializeResult:
        if writes_row:
            night = date.fromisoformat(context.partition_key)
            record = RunRecord(context.run.run_id, night, "smoke", "stand-in", datetime.now(UTC))
            store.open().write_run(record)
        return dg.MaterializeResult(
            check_results=[dg.AssetCheckResult(check_name="no_loss", passed=passed)]
        )

    job = dg.Definitions(
        assets=[stand_in],
        jobs=[dg.define_asset_job(name, selection=[stand_in])],
        resources={"store": MetricStoreResource(path=str(store_path))},
    ).resolve_job_def(name)
    return job.execute_in_process(instance=instance, partition_key=NIGHT, raise_on_error=False)


def _store_resources(store_path) -> dict:
    return {"store": MetricStoreResource(path=str(store_path))}


def _store_run(store_path, run_id: str) -> dict:
    (row,) = MetricStore(store_path).runs().filter(run_id=run_id).iter_rows(named=True)
    return row


@pytest.mark.parametrize(
    ("passed", "status", "outcome"),
    [
        (False, dg.DagsterRunStatus.FAILURE, "failed"),
        (True, dg.DagsterRunStatus.SUCCESS, "succeeded"),
    ],
)
def test_a_finished_suite_run_closes_its_store_row_and_requests_the_nights_history(
    tmp_path, passed: bool, status: dg.DagsterRunStatus, outcome: str
) -> None:
    """A real run of a stand-in suite: a failed blocking check fails it, and the night
    still gets its history run; the row the asset wrote goes from 'running' to
    ``outcome`` at the run's end time."""
    store_path = tmp_path / "m.duckdb"
    with dg.instance_for_test() as instance:
        ticks = SensorTicks(
            make_suite_finished_sensor(status), instance, _store_resources(store_path)
        )
        assert "Initiating" in ticks.tick().skip_message  # the cursor starts before the run
        result = _run_stand_in(
            instance, "nightly_suite", store_path, passed=passed, writes_row=True
        )
        assert result.success is passed
        run_id = result.run_id
        assert _store_run(store_path, run_id)["status"] == "running"

        (request,) = ticks.tick().run_requests
        assert (request.job_name or ticks.sensor.job_name) == "nightly_history"
        assert request.partition_key == NIGHT
        assert request.run_key == f"history-{run_id}"
        assert request.tags["nightly/suite_status"] == outcome

        row = _store_run(store_path, run_id)
        assert row["status"] == outcome
        end = instance.get_run_record_by_id(run_id).end_time
        assert row["finished_at"].replace(tzinfo=UTC).timestamp() == pytest.approx(end, abs=1e-3)
        assert not ticks.tick().run_requests  # that run is behind the cursor now


def test_a_suite_run_that_wrote_no_store_row_still_gets_its_history(tmp_path) -> None:
    """RunNotFoundError from finish_run is logged; the night is evaluated all the same."""
    store_path = tmp_path / "m.duckdb"
    with dg.instance_for_test() as instance:
        ticks = SensorTicks(
            make_suite_finished_sensor(dg.DagsterRunStatus.FAILURE),
            instance,
            _store_resources(store_path),
        )
        ticks.tick()
        result = _run_stand_in(
            instance, "nightly_suite", store_path, passed=False, writes_row=False
        )
        (request,) = ticks.tick().run_requests
        assert request.run_key == f"history-{result.run_id}"
        assert MetricStore(store_path).runs().is_empty()


def test_a_history_run_ending_requests_nothing(tmp_path) -> None:
    """Only nightly_suite is watched: a nightly_history run (here a stand-in under that
    name) failing must not start another one."""
    store_path = tmp_path / "m.duckdb"
    with dg.instance_for_test() as instance:
        ticks = SensorTicks(
            make_suite_finished_sensor(dg.DagsterRunStatus.FAILURE),
            instance,
            _store_resources(store_path),
        )
        ticks.tick()
        result = _run_stand_in(
            instance, "nightly_history", store_path, passed=False, writes_row=True
        )
        assert not result.success
        assert not ticks.tick().run_requests
        assert _store_run(store_path, result.run_id)["status"] == "running"


def test_a_canceled_suite_run_is_marked_canceled_and_gets_no_history(tmp_path) -> None:
    """A hand-built run record (a real in-process run cannot be canceled cheaply), moved to
    CANCELED through the instance as the run coordinator would."""
    store_path = tmp_path / "m.duckdb"
    with dg.instance_for_test() as instance:
        ticks = SensorTicks(
            make_suite_finished_sensor(dg.DagsterRunStatus.CANCELED),
            instance,
            _store_resources(store_path),
        )
        ticks.tick()
        run = instance.add_run(
            dg.DagsterRun(
                job_name="nightly_suite",
                run_id="fake-canceled-run",
                status=dg.DagsterRunStatus.STARTED,
                tags={"dagster/partition": NIGHT},
            )
        )
        MetricStore(store_path).write_run(
            RunRecord(run.run_id, date.fromisoformat(NIGHT), "smoke", "stand-in", datetime.now(UTC))
        )
        instance.report_run_canceled(run)
        result = ticks.tick()
        assert not result.run_requests
        assert _store_run(store_path, run.run_id)["status"] == "canceled"
