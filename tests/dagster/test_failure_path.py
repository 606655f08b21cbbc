"""The failure path end to end, on real parts: a platform really broken by a testbed
knob fails a real suite asset's blocking check, and that failure is followed through the
home's Dagster instance, the run-status sensor, ``nightly run``'s exit status and JUnit.
And the other ways a night ends: an infrastructure failure (exit 1, retried per policy),
a configuration error (never retried), an external ``--target FILE`` (passes).

Each night is Test 02 at the ci profile (its blocking ``stale_versions_get_409`` fails in
seconds on ``optimistic_locking: false``), one platform per case."""

from __future__ import annotations

import json
import socket
from datetime import UTC, date, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import dagster as dg
import pytest

from nightly_pipeline.assets.suite import SUITE_ASSETS
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.schedules import make_nightly_suite_schedule
from nightly_pipeline.cli import main
from nightly_pipeline.definitions import defs
from nightly_pipeline.home import Home
from nightly_pipeline.resources import MetricStoreResource, ProfileResource, TargetResource
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from tests.dagster.ticks import SensorTicks
from tests.suite.platforms import ci_platform

NIGHT = date(2026, 11, 20)
(CRUD,) = select_tests("02")
CRUD_KEYS = [dg.AssetKey([CRUD.spec.key, name]) for name in CRUD.spec.assets]
LOCKING = dg.AssetCheckKey(dg.AssetKey([CRUD.spec.key, "security"]), "stale_versions_get_409")
BROKEN = {"optimistic_locking": False}
"""An API that ignores ``If-Match``: no 409 ever (testbed/CONTRACT.md)."""


def _night(home: Home, *args: str) -> list[str]:
    """``nightly run`` of Test 02 at ci for ``NIGHT`` in ``home``, plus ``args``."""
    store = ["--store", str(home.store)]
    return [*store, "run", "--profile", "ci", "--tests", "02", "--night", str(NIGHT), *args]


def _latest_evaluation(instance: dg.DagsterInstance, key: dg.AssetCheckKey):
    """The check's latest execution record and its evaluation, as the UI reads them."""
    (record,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    evaluation = record.event.dagster_event.event_specific_data
    return record, evaluation


def _retries(instance: dg.DagsterInstance, run_id: str) -> int:
    """How many times Dagster put a step of ``run_id`` up for retry."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY
    ).records
    return len(records)


def test_nightly_run_on_a_broken_platform_exits_1_with_the_failure_in_dagster_and_junit(
    tmp_path, capsys
) -> None:
    """``--knob optimistic_locking=false``: the real Test 02 sees no 409, its blocking
    check fails with observed 0; exit 1; the home's instance holds the failed evaluation
    (what the UI shows); the run is failed and ``nightly run`` ran the night's history
    itself, so the failure sensor, ticked on that instance, leaves the run alone (no
    second history run); JUnit has a ``<failure>`` for the check with its observed value."""
    home = Home.at(tmp_path / "home")
    junit = tmp_path / "junit.xml"
    sensor = defs.resolve_sensor_def("nightly_suite_failed")
    resources = {"store": MetricStoreResource(path=str(home.store))}
    with open_instance(home) as instance:  # the sensor's cursor starts before the run
        cursor = SensorTicks(sensor, instance, resources).tick().cursor

    code = main(_night(home, "--knob", "optimistic_locking=false", "--junit", str(junit)))

    out, err = capsys.readouterr()
    assert code == 1, err[-3000:]
    assert "a blocking check failed" in err and "run failed" not in err
    assert '(testbed knobs: {"optimistic_locking": false})' in err
    with dg.DagsterInstance.from_config(str(home.dagster)) as instance:  # what the UI opens
        (suite,) = instance.get_runs(dg.RunsFilter(job_name="nightly_suite"))
        assert suite.status == dg.DagsterRunStatus.FAILURE
        assert suite.tags["dagster/partition"] == NIGHT.isoformat()
        target_config = suite.run_config["resources"]["target"]["config"]
        assert json.loads(target_config["testbed_knobs"]) == BROKEN  # the UI says it was broken
        record, evaluation = _latest_evaluation(instance, LOCKING)
        assert record.run_id == suite.run_id
        assert record.status.value == "FAILED"
        assert evaluation.passed is False
        assert evaluation.blocking is True
        observed = evaluation.metadata["observed"].value
        assert observed == 0  # not one 409: the API ignored If-Match
        assert evaluation.metadata["threshold"].value == "count>0"

        (history,) = instance.get_runs(dg.RunsFilter(job_name="nightly_history"))
        assert history.status == dg.DagsterRunStatus.SUCCESS
        assert history.tags["nightly/suite_run"] == suite.run_id
        assert history.tags["nightly/suite_status"] == "failed"
        tick = SensorTicks(sensor, instance, resources, cursor).tick()
        assert tick.run_requests == []
        assert f"run {suite.run_id} is nightly run's" in tick.skip_message

    (row,) = MetricStore(home.store).runs().iter_rows(named=True)
    assert (row["run_id"], row["status"]) == (suite.run_id, "failed")
    assert "stale_versions_get_409" in out and "FAIL" in out

    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1" and root.get("errors") == "0"
    (case,) = root.findall(f"testcase[@name='{LOCKING.name}']")
    assert case.get("classname") == CRUD.spec.key
    (failure,) = case.findall("failure")
    assert failure.get("message").startswith("observed 0, threshold count > 0: ")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert float(properties["observed"]) == observed
    assert properties["severity"] == "blocking"
    assert [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None] == [
        LOCKING.name
    ]


def test_a_scheduled_night_on_a_broken_platform_gets_its_history_from_the_failure_sensor(
    tmp_path, monkeypatch
) -> None:
    """The night as the daemon runs it (the schedule's request, its config and tags, plus
    the knob), on a broken platform: the suite run fails on the blocking check, and
    ``nightly_suite_failed`` ticked on the instance closes its store row and requests
    ``nightly_history`` for that night, once; that run succeeds."""
    home = Home.at(tmp_path / "home")
    monkeypatch.setenv("NIGHTLY_HOME", str(home.root))
    schedule = make_nightly_suite_schedule("ci")
    sensor = defs.resolve_sensor_def("nightly_suite_failed")
    resources = {"store": MetricStoreResource(path=str(home.store))}
    with open_instance(home) as instance:
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 11, 21, 2, 10, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        ) as context:
            (request,) = schedule.evaluate_tick(context).run_requests
        assert request.partition_key == NIGHT.isoformat()

        ticks = SensorTicks(sensor, instance, resources)
        ticks.tick()
        knobs = {"target": {"config": {"testbed_knobs": json.dumps(BROKEN)}}}
        suite = defs.resolve_job_def("nightly_suite").execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            asset_selection=CRUD_KEYS,
            run_config={"resources": {**request.run_config["resources"], **knobs}},
            tags=request.tags,
            raise_on_error=False,
        )
        assert not suite.success
        evaluations = suite.get_asset_check_evaluations()
        blocking = dg.AssetCheckSeverity.ERROR  # a loaded host may fail a WARN target too
        (failed,) = [e for e in evaluations if not e.passed and e.severity == blocking]
        assert (failed.asset_key, failed.check_name) == (LOCKING.asset_key, LOCKING.name)

        (history_request,) = ticks.tick().run_requests
        assert history_request.partition_key == NIGHT.isoformat()
        assert history_request.run_key == f"history-{suite.run_id}"
        assert history_request.tags["nightly/suite_status"] == "failed"
        assert ticks.tick().run_requests == []  # once per run
        (row,) = MetricStore(home.store).runs().iter_rows(named=True)
        assert (row["run_id"], row["status"]) == (suite.run_id, "failed")

        history = defs.resolve_job_def("nightly_history").execute_in_process(
            instance=instance,
            partition_key=history_request.partition_key,
            tags=history_request.tags,
        )
        assert history.success


def test_an_unreachable_target_is_an_infrastructure_failure_retried_then_exit_1(
    tmp_path, capsys, monkeypatch
) -> None:
    """A target file naming a loopback port nothing listens on (bound, never listening:
    connections are refused): Test 02's step is retried per its policy (3 attempts), then
    the run fails; exit 1 with the cause, and JUnit reports the run as an error."""
    monkeypatch.setenv("NIGHTLY_TEST_PASSWORD", "unused")
    home = Home.at(tmp_path / "home")
    junit = tmp_path / "junit.xml"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        target = _target_file(
            tmp_path, f"http://127.0.0.1:{port}", ["user0001"], "NIGHTLY_TEST_PASSWORD"
        )
        code = main(_night(home, "--target", str(target), "--junit", str(junit)))
    err = capsys.readouterr().err
    assert code == 1, err[-3000:]
    assert "run failed: 02_conversation_crud: Exceeded max_retries of 2" in err, err[-3000:]
    assert f"127.0.0.1:{port}" in err
    with open_instance(home) as instance:
        (suite,) = instance.get_runs(dg.RunsFilter(job_name="nightly_suite"))
        assert suite.status == dg.DagsterRunStatus.FAILURE
        assert _retries(instance, suite.run_id) == 2
    root = ET.parse(junit).getroot()
    assert root.get("errors") == "1" and root.get("failures") == "0"
    (error,) = root.findall("testcase[@name='run']/error")
    assert "Exceeded max_retries of 2" in error.get("message")


def test_a_configuration_error_in_a_test_step_fails_at_once_never_retried(tmp_path) -> None:
    """A misspelt knob reaching the real Test 02 asset (its real retry policy, as a UI
    launch would, past the command line's own refusal): the step fails with the valid
    knobs named, on its first attempt, and no platform was started."""
    (crud,) = [a for a in SUITE_ASSETS if a.node_def.name == CRUD.spec.key]
    home = tmp_path / "home"
    result = dg.materialize(
        [crud],
        partition_key=NIGHT.isoformat(),
        resources={
            "target": TargetResource(home=str(home), testbed_knobs='{"optimistic_lockin": false}'),
            "store": MetricStoreResource(path=str(home / "metrics.duckdb")),
            "profile": ProfileResource(name="ci"),
        },
        raise_on_error=False,
    )
    assert not result.success
    starts = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    retries = [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert (len(starts), retries) == (1, [])
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "'optimistic_lockin' is not a testbed knob" in message
    assert "optimistic_locking" in message and "CONTRACT.md" in message
    assert not (home / "stack").exists() or list((home / "stack").iterdir()) == []


@pytest.mark.parametrize(
    ("knob", "extra", "problem"),
    [
        ("optimistic_lockin=false", [], "'optimistic_lockin' is not a testbed knob"),
        ("optimistic_locking=flase", [], "optimistic_locking must be bool, got 'flase'"),
        ("optimistic_locking", [], "--knob 'optimistic_locking': expected NAME=VALUE"),
        ("pg_dsn=postgresql://x", [], "'pg_dsn' is not a testbed knob"),
        ("optimistic_locking=false", ["--target", "t.json"], "a target file's platform is not"),
    ],
)
def test_a_bad_knob_is_refused_before_anything_starts(
    tmp_path, capsys, monkeypatch, knob, extra, problem
) -> None:
    """Exit 2, the problem named once, nothing started (no Dagster run, no stack)."""
    monkeypatch.setenv("NIGHTLY_TEST_PASSWORD", "unused")
    monkeypatch.chdir(tmp_path)
    _target_file(tmp_path, "http://127.0.0.1:9", ["user0001"], "NIGHTLY_TEST_PASSWORD")
    home = Home.at(tmp_path / "home")
    assert main(_night(home, "--knob", knob, *extra)) == 2
    err = capsys.readouterr().err
    assert "nothing started" in err and err.count(problem) == 1, err
    assert "Traceback" not in err
    assert not home.dagster.exists() and not home.stack.exists()


def _target_file(directory: Path, base_url: str, users: list[str], password_env: str) -> Path:
    """A target file (README: external target mode) for a platform at ``base_url``."""
    ws = base_url.replace("http://", "ws://", 1)
    target = directory / "t.json"
    target.write_text(
        json.dumps(
            {
                "name": "external-ci",
                "base_url": base_url,
                "ws_url": f"{ws}/v1/ws",
                "metrics_urls": {"api": f"{base_url}/metrics"},
                "users": users,
                "password_env": password_env,
            }
        )
    )
    return target


def test_nightly_run_with_a_target_file_loads_that_platform_and_passes(
    tmp_path_factory, system_dir, tmp_path, capsys, monkeypatch
) -> None:
    """``--target FILE`` naming a platform started apart (here: the embedded one, by the
    test): the night runs Test 02 against it, starts nothing of its own, exits 0, and the
    store's run row names the file's target."""
    home = Home.at(tmp_path / "home")
    with ci_platform(tmp_path_factory, system_dir, "external") as up:
        monkeypatch.setenv("NIGHTLY_TEST_PASSWORD", up.password)
        target = _target_file(tmp_path, up.base_url, sorted(up.users), "NIGHTLY_TEST_PASSWORD")
        metrics = json.loads(target.read_text()) | {"metrics_urls": dict(up.metrics_urls)}
        target.write_text(json.dumps(metrics))
        code = main(_night(home, "--target", str(target)))
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "every blocking check passed" in out
    assert not home.stack.exists() or list(home.stack.iterdir()) == []
    (row,) = MetricStore(home.store).runs().iter_rows(named=True)
    assert (row["target"], row["status"]) == ("external-ci", "succeeded")
    with open_instance(home) as instance:
        _, evaluation = _latest_evaluation(instance, LOCKING)
        assert evaluation.passed and evaluation.metadata["observed"].value > 0
