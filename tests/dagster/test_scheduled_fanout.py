"""The scheduled night fanned out over N targets (``$NIGHTLY_SCHEDULE_TARGETS``): one
``nightly_suite`` run per target of the plan, and one ``nightly_history`` after all.

Real Dagster on real (temporary, SQLite) instances: the schedule's ticks, the sensors'
ticks over real runs, the instance template's run limits as the run queue daemon
applies them. The one-target night (the setting unset) is ``test_automation.py``'s.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from nightly_pipeline.assets.steps import TARGET_POOL
from nightly_pipeline.assets.suite import SUITE_ASSETS
from nightly_pipeline.automation.executors import ONE_STEP_AT_A_TIME, code_location_executor
from nightly_pipeline.automation.fanout import (
    EXPECTED_END_TAG,
    NIGHT_PLAN_TAG,
    PLAN_TAG,
    TARGET_TAG,
    plan_tags,
)
from nightly_pipeline.automation.schedules import (
    SCHEDULE_TARGETS_ENV,
    fanned_night_plan,
    limits_runs_per_target,
    make_nightly_suite_schedule,
    scheduled_places,
)
from nightly_pipeline.automation.sensors import (
    make_suite_finished_sensor,
    make_target_version_sensor,
)
from nightly_pipeline.automation.suite_runs import FANOUT_TAG, PARTITION_TAG
from nightly_pipeline.definitions import defs
from nightly_pipeline.resources import MetricStoreResource, TargetVersionResource
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.night_plan import PlacedTarget, night_places
from tests.dagster.ticks import SensorTicks
from tests.dagster.version_server import VersionServer

NIGHT_0210 = datetime(2026, 11, 24, 2, 10, tzinfo=UTC)
NIGHT = "2026-11-23"
TEMPLATE = Path(__file__).parents[2] / "nightly_pipeline" / "automation" / "dagster.yaml"


def _targets_file(tmp_path: Path, names: tuple[str, ...] = ("staging-a", "staging-b")) -> Path:
    path = tmp_path / "staging.json"
    entries = [{"name": n, "base_url": f"http://{n}.invalid"} for n in names]
    path.write_text(json.dumps({"targets": entries}))
    return path


# --- the setting ---------------------------------------------------------------------


def test_unset_or_empty_is_the_one_target_night() -> None:
    assert scheduled_places({}) is None
    assert scheduled_places({SCHEDULE_TARGETS_ENV: "  "}) is None
    assert make_nightly_suite_schedule().description == (  # as before the setting existed
        "Every test at the 'nightly' profile, for the night that just ended; "
        "nightly_history follows when the run ends."
    )


def test_the_setting_reads_what_nightly_run_targets_reads(tmp_path: Path) -> None:
    """Table: value -> the plan's targets and where each is (``night_places``')."""
    file = _targets_file(tmp_path)
    cases = {
        "2": {"embedded-1": PlacedTarget("embedded"), "embedded-2": PlacedTarget("embedded")},
        "embedded:1": {"embedded-1": PlacedTarget("embedded")},
        "docker:2": {"docker-1": PlacedTarget("docker"), "docker-2": PlacedTarget("docker")},
        str(file): {n: PlacedTarget(str(file), n) for n in ("staging-a", "staging-b")},
        f"{file}:1": {"staging-a": PlacedTarget(str(file), "staging-a")},
    }
    for value, expected in cases.items():
        assert scheduled_places({SCHEDULE_TARGETS_ENV: value}) == expected, value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0", "at least 1"),
        ("docker:0", "at least 1"),
        ("{tmp}/nosuch.json", "cannot read it as JSON"),
        (
            "{file}:3",
            'lists 2 target\\(s\\) \\(staging-a, staging-b\\); add entries under "targets"',
        ),
        ("four", "cannot read it as JSON"),
    ],
)
def test_a_bad_setting_is_refused_with_the_forms(tmp_path: Path, value: str, why: str) -> None:
    value = value.format(tmp=tmp_path, file=_targets_file(tmp_path))
    with pytest.raises(ConfigurationError, match=rf"\$NIGHTLY_SCHEDULE_TARGETS=.*{why}.*docker:N"):
        scheduled_places({SCHEDULE_TARGETS_ENV: value})


def test_celery_and_a_fanned_out_schedule_are_refused_together() -> None:
    env = {"NIGHTLY_EXECUTOR": "celery", "NIGHTLY_CELERY_BROKER": "redis://127.0.0.1:1/0"}
    assert code_location_executor(env) is not None  # celery alone loads
    with pytest.raises(ConfigurationError, match="unset one of them"):
        code_location_executor(env, fanned_out=True)
    assert code_location_executor({}) is None  # Dagster's default, as before
    assert code_location_executor({}, fanned_out=True) is ONE_STEP_AT_A_TIME


def test_a_fanned_out_code_location_runs_one_step_at_a_time_in_every_run() -> None:
    """The executor's config is fixed (``configured``): a launchpad cannot raise it."""
    resolved = ONE_STEP_AT_A_TIME.config_schema.resolve_config({}).value
    assert resolved["config"]["max_concurrent"] == 1
    assert ONE_STEP_AT_A_TIME.executor_creation_fn is dg.multiprocess_executor.executor_creation_fn


_LOAD = """
from datetime import UTC, datetime
import dagster as dg
from nightly_pipeline.definitions import defs
with dg.instance_for_test() as instance:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 24, 2, 10, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    ) as context:
        result = defs.resolve_schedule_def("nightly_suite_0210_utc").evaluate_tick(context)
print(defs.resolve_job_def("nightly_suite").executor_def.name)
print(sorted(r.run_key for r in result.run_requests))
"""


@pytest.mark.parametrize(
    ("env", "out", "err"),
    [
        ({}, ["multi_or_in_process_executor", "['2026-11-23']"], None),
        (
            {SCHEDULE_TARGETS_ENV: "2"},
            [
                "multiprocess_one_step_at_a_time",
                "['2026-11-23/embedded-1', '2026-11-23/embedded-2']",
            ],
            None,
        ),
        ({SCHEDULE_TARGETS_ENV: "two"}, None, "$NIGHTLY_SCHEDULE_TARGETS='two': target file two"),
        (
            {
                SCHEDULE_TARGETS_ENV: "2",
                "NIGHTLY_EXECUTOR": "celery",
                "NIGHTLY_CELERY_BROKER": "redis://127.0.0.1:1/0",
            },
            None,
            "$NIGHTLY_EXECUTOR=celery runs one target's night",
        ),
    ],
    ids=["unset", "two", "bad", "celery"],
)
def test_the_code_location_loads_the_setting_from_the_environment(
    env: dict, out: list[str] | None, err: str | None
) -> None:
    """A fresh process loads definitions.py as Dagster would; a bad value fails the load
    with the fix named."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in (SCHEDULE_TARGETS_ENV, "NIGHTLY_EXECUTOR", "NIGHTLY_SCHEDULE_PROFILE")
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOAD],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    if err is not None:
        assert done.returncode != 0
        assert err in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-2:] == out


# --- the schedule's tick -------------------------------------------------------------


def _tick(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=NIGHT_0210,
        repository_def=defs.get_repository_def(),
    ) as context:
        return list(schedule.evaluate_tick(context).run_requests or [])


def test_two_targets_get_one_run_each_with_the_planned_tests() -> None:
    places = night_places("embedded", 2)
    plan = fanned_night_plan("nightly", places)
    with dg.instance_for_test() as instance:
        requests = _tick(make_nightly_suite_schedule("nightly", places=places), instance)
        slots = instance.event_log_storage.get_concurrency_info(TARGET_POOL).slot_count
    assert [r.run_key for r in requests] == [f"{NIGHT}/embedded-1", f"{NIGHT}/embedded-2"]
    job = defs.resolve_job_def("nightly_suite")
    suite_keys = {k for a in SUITE_ASSETS for k in a.keys}
    seen: set[dg.AssetKey] = set()
    for request, target in zip(requests, plan.targets, strict=True):
        keys = set(request.asset_selection or [])
        assert not keys & seen  # each test on one target only
        seen |= keys
        assert {k.path[0] for k in keys & suite_keys} == set(target.keys)
        assert request.partition_key == NIGHT
        assert request.run_config["resources"] == {
            "profile": {"config": {"name": "nightly"}},
            "target": {"config": {"target": "embedded", "entry": ""}},
        }
        dg.validate_run_config(job, request.run_config)
        tags = request.tags
        assert tags[TARGET_TAG] == target.name
        assert tags[PLAN_TAG] == target.summary()
        assert json.loads(tags[NIGHT_PLAN_TAG]) == json.loads(plan.to_json())
        assert tags[EXPECTED_END_TAG] == plan_tags(plan, target, NIGHT_0210)[EXPECTED_END_TAG]
        assert tags[FANOUT_TAG] == f"{NIGHT}@2026-11-24T02:10:00+00:00"
        assert (tags["nightly/profile"], tags["nightly/trigger"]) == ("nightly", "schedule")
    # Every test of the job, once; the selfcheck with the first target, as a one-target
    # night runs it too.
    assert seen == set(job.asset_layer.selected_asset_keys)
    assert dg.AssetKey("engine_selfcheck") in set(requests[0].asset_selection or [])
    assert slots == 2  # the target pool: one slot per target, else the runs would queue


def test_external_targets_get_their_entry(tmp_path: Path) -> None:
    file = _targets_file(tmp_path)
    places = scheduled_places({SCHEDULE_TARGETS_ENV: str(file)})
    with dg.instance_for_test() as instance:
        requests = _tick(make_nightly_suite_schedule("smoke", places=places), instance)
    assert [r.run_config["resources"]["target"] for r in requests] == [
        {"config": {"target": str(file), "entry": "staging-a"}},
        {"config": {"target": str(file), "entry": "staging-b"}},
    ]


def test_the_pool_is_never_lowered() -> None:
    """A person who gave ``target`` more slots keeps them."""
    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots(TARGET_POOL, 5)
        _tick(make_nightly_suite_schedule("ci", places=night_places("embedded", 2)), instance)
        assert instance.event_log_storage.get_concurrency_info(TARGET_POOL).slot_count == 5


def test_four_targets_end_the_nightly_profile_within_two_hours() -> None:
    """The issue's bound, from the plan the schedule's runs are tagged with."""
    plan = fanned_night_plan("nightly", night_places("embedded", 4))
    assert plan.end_s <= 120 * 60
    assert fanned_night_plan("nightly", night_places("embedded", 1)).end_s > 3 * 3600


def test_the_template_allows_one_run_per_target_at_a_time(tmp_path: Path) -> None:
    """The run queue daemon's own choice (``QueuedRunCoordinatorDaemon._get_runs_to_dequeue``,
    a private method: the part of an iteration that picks runs, before it launches them)
    on an instance made from the template: with a run of ``embedded-1`` in progress, the
    queued run of ``embedded-1`` waits, ``embedded-2``'s and an untagged run go."""
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    origin = RemoteJobOrigin(  # where a queued run comes from (required of one)
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("nightly_pipeline"), "__repository__"),
        "nightly_suite",
    )

    shutil.copy(TEMPLATE, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert limits_runs_per_target(instance)

        def run(status: dg.DagsterRunStatus, target: str | None) -> str:
            tags = {TARGET_TAG: target} if target else {}
            added = instance.add_run(
                dg.DagsterRun("nightly_suite", status=status, tags=tags, remote_job_origin=origin)
            )
            return added.run_id

        run(dg.DagsterRunStatus.STARTED, "embedded-1")
        queued = {
            "embedded-1": run(dg.DagsterRunStatus.QUEUED, "embedded-1"),
            "embedded-2": run(dg.DagsterRunStatus.QUEUED, "embedded-2"),
            "untagged": run(dg.DagsterRunStatus.QUEUED, None),
        }
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        chosen = daemon._get_runs_to_dequeue(
            instance, instance.get_concurrency_config(), fixed_iteration_time=None
        )
        assert {r.run_id for r in chosen} == {queued["embedded-2"], queued["untagged"]}
    with dg.instance_for_test() as bare:  # a dagster.yaml without it: the tick warns
        assert not limits_runs_per_target(bare)


# --- history once, after the night's last run ------------------------------------------


def _target_run(
    instance: dg.DagsterInstance, tags: dict[str, str], *, passed: bool
) -> dg.ExecuteInProcessResult:
    """A real run of a stand-in ``nightly_suite`` (the real tests need platforms) with a
    fanned-out run's tags; a failed blocking check fails it."""

    @dg.asset(
        name="stand_in_test",
        check_specs=[dg.AssetCheckSpec("no_loss", asset="stand_in_test", blocking=True)],
    )
    def stand_in() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            check_results=[dg.AssetCheckResult(check_name="no_loss", passed=passed)]
        )

    job = dg.Definitions(
        assets=[stand_in], jobs=[dg.define_asset_job("nightly_suite", selection=[stand_in])]
    ).resolve_job_def("nightly_suite")
    return job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)


def _night_tags(fanout: str) -> dict[str, dict[str, str]]:
    places = night_places("embedded", 2)
    plan = fanned_night_plan("ci", places)
    return {
        t.name: {
            **plan_tags(plan, t, NIGHT_0210),
            FANOUT_TAG: fanout,
            PARTITION_TAG: NIGHT,
            "nightly/trigger": "schedule",
        }
        for t in plan.targets
    }


def _sensors(instance: dg.DagsterInstance, store: Path) -> dict[str, SensorTicks]:
    resources = {"store": MetricStoreResource(path=str(store))}
    ticks = {
        status.value: SensorTicks(make_suite_finished_sensor(status), instance, resources)
        for status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    }
    for t in ticks.values():
        t.tick()  # the cursor starts here
    return ticks


def test_history_follows_once_after_both_targets_ended(tmp_path: Path) -> None:
    """Real runs (stand-ins, in process) in a temporary instance: the first target's run
    ending requests nothing; the second's, which failed, requests the night's one
    history run, for both runs, as failed."""
    tags = _night_tags(f"{NIGHT}@a")
    with dg.instance_for_test() as instance:
        ticks = _sensors(instance, tmp_path / "m.duckdb")
        first = _target_run(instance, tags["embedded-1"], passed=True)
        assert first.success
        assert not ticks["SUCCESS"].tick().run_requests
        assert not ticks["FAILURE"].tick().run_requests
        second = _target_run(instance, tags["embedded-2"], passed=False)
        assert not second.success
        assert not ticks["SUCCESS"].tick().run_requests
        (request,) = ticks["FAILURE"].tick().run_requests
        assert request.partition_key == NIGHT
        assert request.run_key == f"history-{second.run_id}"
        assert request.tags["nightly/suite_run"] == ",".join(sorted([first.run_id, second.run_id]))
        assert request.tags["nightly/suite_status"] == "failed"
        assert not ticks["FAILURE"].tick().run_requests


def test_two_runs_ending_between_ticks_make_one_history_run(tmp_path: Path) -> None:
    """Both runs ended before either sensor ticks (one sensor sees each): only the
    evaluation of the run that ended last requests the history run."""
    tags = _night_tags(f"{NIGHT}@b")
    with dg.instance_for_test() as instance:
        ticks = _sensors(instance, tmp_path / "m.duckdb")
        _target_run(instance, tags["embedded-1"], passed=False)
        last = _target_run(instance, tags["embedded-2"], passed=True)
        requests = [r for t in ticks.values() for r in t.tick().run_requests]
        assert [r.run_key for r in requests] == [f"history-{last.run_id}"]
        # Another fan-out of the same night (another tick) is a night of its own.
        other = _night_tags(f"{NIGHT}@c")
        _target_run(instance, other["embedded-1"], passed=True)
        assert not [r for t in ticks.values() for r in t.tick().run_requests]


# --- end to end: the tick's two runs, launched ------------------------------------------


def fanned_suite_job() -> dg.JobDefinition:
    """The code location's ``nightly_suite`` as it is with ``$NIGHTLY_SCHEDULE_TARGETS``
    set (one step at a time), module-scoped for ``dagster.reconstructable``."""
    from nightly_pipeline.automation.dagster_adapter import with_executor

    return with_executor(defs.resolve_job_def("nightly_suite"), ONE_STEP_AT_A_TIME)


_LAUNCH = """
import json, sys
import dagster as dg
from tests.dagster.test_scheduled_fanout import fanned_suite_job
request = json.loads(sys.argv[1])
with dg.DagsterInstance.get() as instance:  # $DAGSTER_HOME: the home's instance
    result = dg.execute_job(
        dg.reconstructable(fanned_suite_job),
        instance,
        run_config=request["run_config"],
        tags=request["tags"],
        asset_selection=[dg.AssetKey.from_user_string(k) for k in request["keys"]],
        raise_on_error=False,
    )
print(result.run_id)
"""


def _spans(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, float, str]]:
    """Each step's (start, end, key) from the run's events."""
    starts: dict[str, float] = {}
    spans = []
    for record in instance.get_records_for_run(
        run_id,
        of_type={
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        },
    ).records:
        entry = record.event_log_entry
        key = entry.step_key or ""
        if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
            starts[key] = entry.timestamp
        else:
            spans.append((starts[key], entry.timestamp, key))
    return sorted(spans)


@pytest.mark.slow
def test_the_ticks_runs_run_side_by_side_one_test_at_a_time_then_history_once(
    tmp_path: Path,
) -> None:
    """The schedule's tick at ``ci`` over two embedded targets, Tests 02 and 06, on a home
    made from the instance template; each request launched as the daemon's run worker
    would run it (``dagster.execute_job`` in a process of its own, the run config, tags
    and asset selection of the request, the multiprocess executor at one step a time),
    both at once. Both targets ran, their runs overlapped (the tick gave the pool a slot
    per target), the steps of one run never did; the sensors then request one history run.
    Not through the daemon's queue: its per-target run limit is checked above."""
    from nightly_pipeline.automation.instance import prepare_instance_dir
    from nightly_pipeline.home import Home
    from nightly_pipeline.suite.catalog import select_tests

    home = Home.at(tmp_path / "home")
    instance_dir = prepare_instance_dir(home)
    schedule = make_nightly_suite_schedule(
        "ci", places=night_places("embedded", 2), tests=select_tests("02,06")
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != SCHEDULE_TARGETS_ENV},
        "DAGSTER_HOME": str(instance_dir),
        "NIGHTLY_HOME": str(home.root),
    }
    with dg.DagsterInstance.from_config(str(instance_dir)) as instance:
        requests = _tick(schedule, instance)
        assert len(requests) == 2
        ticks = _sensors(instance, home.store)
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _LAUNCH,
                    json.dumps(
                        {
                            "run_config": r.run_config,
                            "tags": r.tags,
                            "keys": [k.to_user_string() for k in r.asset_selection or []],
                        }
                    ),
                ],
                env=env,
                cwd=Path(__file__).parents[2],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in requests
        ]
        outs = [w.communicate(timeout=900) for w in workers]
        for worker, (_, err) in zip(workers, outs, strict=True):
            assert worker.returncode == 0, err[-3000:]
        run_ids = [out.split()[-1] for out, _ in outs]
        runs = [instance.get_run_by_id(i) for i in run_ids]
        assert [r.tags[TARGET_TAG] for r in runs] == ["embedded-1", "embedded-2"]
        assert all(r.is_finished for r in runs)
        spans = [_spans(instance, i) for i in run_ids]
        for request, run_spans in zip(requests, spans, strict=True):
            tests = {k.path[0] for k in request.asset_selection or []}
            assert len(run_spans) == len(tests), (tests, run_spans)  # a step per test
            for (_, end, _), (start, _, _) in itertools.pairwise(run_spans):
                assert end <= start, f"two steps of one target overlapped: {run_spans}"
        (first_start, first_end), (second_start, second_end) = ((s[0][0], s[-1][1]) for s in spans)
        assert first_start < second_end and second_start < first_end, (
            f"the targets ran one after another: {spans}"
        )
        # A run-status sensor evaluates one run per tick: as many ticks as runs, and one more.
        results = [t.tick() for _ in range(3) for t in ticks.values()]
        requested = [r for result in results for r in result.run_requests]
        assert len(requested) == 1, [r.skip_message for r in results]
        assert requested[0].tags["nightly/suite_run"] == ",".join(sorted(run_ids))


def test_a_version_change_reruns_the_same_fanned_night(version_server: VersionServer) -> None:
    """The target-version sensor requests the schedule's runs, one per target, under
    its own run keys and trigger: a version change is the same kind of night."""
    places = night_places("embedded", 2)
    sensor = make_target_version_sensor(profile="nightly", places=places)
    resources = {"target_version": TargetVersionResource(url=version_server.url)}
    with dg.instance_for_test() as instance:
        scheduled = _tick(make_nightly_suite_schedule("nightly", places=places), instance)
        cursor = None
        for version in ("1.0.0", "1.1.0"):
            version_server.version = version
            with dg.build_sensor_context(
                instance=instance,
                cursor=cursor,
                resources=resources,
                repository_def=defs.get_repository_def(),
            ) as context:
                result = sensor.evaluate_tick(context)
            cursor = result.cursor
    requests = list(result.run_requests or [])
    assert [r.run_key for r in requests] == ["version-1.1.0/embedded-1", "version-1.1.0/embedded-2"]
    for request, scheduled_request in zip(requests, scheduled, strict=True):
        assert set(request.asset_selection or []) == set(scheduled_request.asset_selection or [])
        assert request.run_config == scheduled_request.run_config
        assert request.tags[TARGET_TAG] == scheduled_request.tags[TARGET_TAG]
        assert request.tags["nightly/trigger"] == "version-change"
        assert request.tags["nightly/version"] == "1.1.0"
    assert len({r.tags[FANOUT_TAG] for r in requests}) == 1  # one night: history once
