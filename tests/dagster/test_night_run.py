"""``nightly run`` is the night the schedule and sensors run: the same jobs, on the home's
Dagster instance (which then holds its runs and check results), writing the same store
rows; and a run whose process died does not block the next one on the ``target`` pool."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from xml.etree import ElementTree as ET

import dagster as dg
import pytest

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import NightRun, reap_dead_runs, run_night, write_junit
from nightly_pipeline.automation.schedules import make_nightly_suite_schedule
from nightly_pipeline.automation.sensors import make_suite_finished_sensor
from nightly_pipeline.definitions import defs
from nightly_pipeline.home import Home
from nightly_pipeline.report.night_summary import render_checks
from nightly_pipeline.resources import MetricStoreResource
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.profiles import PROFILES

NIGHT = date(2026, 11, 20)
LOGINS = select_tests("06")  # the quickest test of the suite at the ci profile
KEYS = [dg.AssetKey(["06_sustained_login", name]) for name in LOGINS[0].spec.assets]


def _scheduled_night(home: Home, monkeypatch: pytest.MonkeyPatch) -> str:
    """The night as the daemon runs it: the schedule's request for the night (a
    deployment with NIGHTLY_HOME set and the ci profile scheduled), the ``nightly_suite``
    job with the request's config and tags on the home's instance (Test 06 only, to keep
    this short), then the run-status sensor's tick and the ``nightly_history`` run it
    requests. The suite's run id."""
    monkeypatch.setenv("NIGHTLY_HOME", str(home.root))
    schedule = make_nightly_suite_schedule("ci")
    with open_instance(home) as instance:
        with dg.build_schedule_context(  # exited: it opens the instance from its ref
            instance=instance,
            scheduled_execution_time=datetime(2026, 11, 21, 2, 10, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        ) as context:
            (request,) = schedule.evaluate_tick(context).run_requests
        assert request.partition_key == NIGHT.isoformat()
        sensor = make_suite_finished_sensor(dg.DagsterRunStatus.SUCCESS)
        resources = {"store": MetricStoreResource()}
        with dg.build_sensor_context(
            instance=instance, resources=resources, repository_def=defs.get_repository_def()
        ) as context:
            first = sensor.evaluate_tick(context)
        suite = defs.resolve_job_def("nightly_suite").execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            asset_selection=KEYS,
            run_config=request.run_config,
            tags=request.tags,
            raise_on_error=False,
        )
        assert suite.success
        with dg.build_sensor_context(
            instance=instance,
            cursor=first.cursor,
            resources=resources,
            repository_def=defs.get_repository_def(),
        ) as context:
            (history_request,) = sensor.evaluate_tick(context).run_requests
        history = defs.resolve_job_def("nightly_history").execute_in_process(
            instance=instance,
            partition_key=history_request.partition_key,
            tags=history_request.tags,
        )
        assert history.success
        return suite.run_id


def _rows(home: Home) -> dict[str, object]:
    store = MetricStore(home.store)
    runs = store.runs()
    results = store.recent_results()
    thresholds = store.threshold_results(NIGHT).filter(scope="run")
    return {
        "runs": sorted(runs.select("night", "profile", "target", "status").iter_rows()),
        "results": sorted(results.select("night", "profile", "test", "status").iter_rows()),
        "thresholds": sorted(thresholds.select("test", "metric", "expression", "severity").rows()),
        "evaluated": sorted(store.verdicts().select("night", "profile", "test").unique().rows()),
        "report": (home.reports / f"{NIGHT}.html").is_file(),
    }


def test_nightly_run_writes_the_rows_the_scheduled_night_writes(
    cli_night, tmp_path, monkeypatch
) -> None:
    scheduled = Home.at(tmp_path / "scheduled")
    _scheduled_night(scheduled, monkeypatch)
    by_cli, run = cli_night
    assert not run.blocking_failed

    expected = _rows(scheduled)
    assert expected["runs"] == [(NIGHT, "ci", "embedded", "succeeded")]
    assert expected["results"] == [(NIGHT, "ci", "06_sustained_login", "passed")]
    assert expected["evaluated"] and expected["report"]
    assert _rows(by_cli) == expected


@pytest.fixture(scope="module")
def cli_night(tmp_path_factory) -> tuple[Home, NightRun]:
    """One ``nightly run`` of Test 06 at the ci profile on a fresh home."""
    home = Home.at(tmp_path_factory.mktemp("cli") / "home")
    run = run_night(LOGINS, PROFILES["ci"], NIGHT, target="embedded", home=home)
    assert run.success, run.error
    return home, run


def test_the_homes_dagster_instance_holds_the_cli_run_and_its_check_results(cli_night) -> None:
    home, run = cli_night
    with dg.DagsterInstance.from_config(str(home.dagster)) as instance:  # what the UI opens
        suite = instance.get_run_by_id(run.run_id)
        assert suite.job_name == "nightly_suite"
        assert suite.status == dg.DagsterRunStatus.SUCCESS
        assert suite.tags["dagster/partition"] == NIGHT.isoformat()
        assert suite.tags["nightly/trigger"] == "cli"
        assert suite.tags["nightly/profile"] == "ci"
        (history,) = instance.get_runs(dg.RunsFilter(job_name="nightly_history"))
        assert history.tags["nightly/suite_run"] == run.run_id
        for key in KEYS:
            materialization = instance.get_latest_materialization_event(key)
            assert materialization.run_id == run.run_id
            assert materialization.asset_materialization.metadata["profile"].value == "ci"
        check = dg.AssetCheckKey(KEYS[1], "login_success_over_99_9pct")  # on .../auth
        (latest,) = instance.event_log_storage.get_asset_check_execution_history(check, limit=1)
        assert latest.run_id == run.run_id
        assert latest.status.value == "SUCCEEDED"
    assert {c.name for c in run.checks} == {c.name for c in LOGINS[0].spec.checks}


def test_the_checks_values_are_the_stored_ones(cli_night, tmp_path) -> None:
    """What ``nightly run`` prints and writes to JUnit beside each verdict is what the
    store recorded for that check's threshold."""
    home, run = cli_night
    stored = {
        (r["metric"], r["expression"]): r["observed"]
        for r in MetricStore(home.store)
        .threshold_results(NIGHT)
        .filter(scope="run")
        .iter_rows(named=True)
    }
    spec = LOGINS[0].spec
    for line in run.checks:
        check = spec.check(line.name)
        assert (line.metric, line.threshold, line.unit) == (check.metric, check.expr, check.unit)
        assert line.observed == pytest.approx(stored[(check.metric, check.expr)])
    table = render_checks(run.checks)
    login = next(c for c in run.checks if c.name == "login_success_over_99_9pct")
    row = rf"auth/login_success_over_99_9pct\s+{re.escape(login.observed_text)}\s+rate > 0\.999"
    assert re.search(row, table), table
    assert "p(95) < 50 ms" in table

    junit = tmp_path / "junit.xml"
    write_junit(run, junit)
    case = ET.parse(junit).getroot().find("testcase[@name='token_p95_under_50ms']")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    token = next(c for c in run.checks if c.name == "token_p95_under_50ms")
    assert properties["threshold"] == "p(95)<50" and properties["unit"] == "ms"
    assert float(properties["observed"]) == pytest.approx(token.observed)


CRASHING_RUN = """
import os, socket, sys
import dagster as dg
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.home import Home
from nightly_pipeline.report.night_summary import render_checks

@dg.asset(pool="target")
def holds_the_target() -> None:
    os.kill(os.getpid(), 9)  # the run's process dies holding its slot

job = dg.define_asset_job("nightly_suite", selection=[holds_the_target])
defs = dg.Definitions(assets=[holds_the_target], jobs=[job])
with open_instance(Home.at(sys.argv[1])) as instance:
    defs.resolve_job_def("nightly_suite").execute_in_process(
        instance=instance,
        tags={"nightly/trigger": "cli", "nightly/pid": str(os.getpid()),
              "nightly/host": socket.gethostname()},
    )
"""


def test_a_run_whose_process_died_is_reaped_and_frees_the_target_pool(tmp_path) -> None:
    """A real in-process run, SIGKILLed while it holds the ``target`` slot: Dagster keeps
    it STARTED and its slot claimed (the next in-process run would wait forever). The
    next ``nightly run`` marks it failed and frees the slot."""
    home = Home.at(tmp_path / "home")
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASHING_RUN))
    crashed = subprocess.run(
        [sys.executable, str(script), str(home.root)], capture_output=True, timeout=120
    )
    assert crashed.returncode == -9, crashed.stderr.decode()[-2000:]
    with open_instance(home) as instance:
        (dead,) = instance.get_runs()
        assert dead.status == dg.DagsterRunStatus.STARTED
        claimed = instance.event_log_storage.get_concurrency_info("target").claimed_slots
        assert [slot.run_id for slot in claimed] == [dead.run_id]

        reaped = reap_dead_runs(instance, MetricStore(home.store))

        assert len(reaped) == 1 and dead.run_id in reaped[0] and "is gone" in reaped[0]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info("target").claimed_slots == []
        assert reap_dead_runs(instance, MetricStore(home.store)) == []


def test_a_live_runs_slot_is_left_alone(tmp_path) -> None:
    """A STARTED run of this host whose process is alive (here: this test's) is not
    reaped, whatever its age."""
    home = Home.at(tmp_path / "home")
    with open_instance(home) as instance:
        run = instance.add_run(
            dg.DagsterRun(
                job_name="nightly_suite",
                run_id="live-run",
                status=dg.DagsterRunStatus.STARTED,
                tags={
                    "nightly/trigger": "cli",
                    "nightly/pid": str(os.getpid()),
                    "nightly/host": socket.gethostname(),
                },
            )
        )
        assert reap_dead_runs(instance, MetricStore(home.store)) == []
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
