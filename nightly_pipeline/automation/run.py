"""``nightly run``: the night as the schedule and sensors run it, in this process.

The same jobs (``nightly_suite``, then ``nightly_history`` for the night), executed in
process on the home's Dagster instance (so the UI shows them), with the resources the
command line chose (``nightly_suite``'s steps on Celery workers instead when asked:
``automation.executors``); the run's store row is closed by ``suite_runs.close_store_run``, as
the sensors close a scheduled run's. Then the store's compaction (``after_night``), a
summary of the checks and JUnit.
"""

import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

import dagster as dg
import psutil

from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.assets.steps import TARGET_POOL
from nightly_pipeline.assets.suite import NOT_MEASURABLE_KEY
from nightly_pipeline.automation.after_night import compact_after_night
from nightly_pipeline.automation.dagster_adapter import (
    RunResult,
    free_slots,
    slot_holders,
    step_failures,
    was_interrupted,
)
from nightly_pipeline.automation.executors import CeleryBroker, celery_suite_job
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.jobs import nightly_history_job, nightly_suite_job
from nightly_pipeline.automation.suite_runs import (
    CLI_TRIGGER,
    HISTORY_AFTER,
    PROFILE_TAG,
    SUITE_OUTCOMES,
    TRIGGER_TAG,
    close_store_run,
    history_tags,
)
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.definitions import defs
from nightly_pipeline.home import Home
from nightly_pipeline.loadgen.thresholds import NOT_MEASURABLE
from nightly_pipeline.report.night_summary import CheckLine
from nightly_pipeline.store import MetricStore, RunStatus
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.context import SuiteTest
from nightly_pipeline.suite.errors import SelectionError
from nightly_pipeline.suite.profiles import Profile
from nightly_pipeline.testbed.stack.reaper import reap_dead_stacks

Say = Callable[[str], None]
"""Where a line for the user goes."""
PARTITION_TAG = "dagster/partition"
PID_TAG = "nightly/pid"
HOST_TAG = "nightly/host"


@dataclass(frozen=True)
class NightRun:
    night: date
    run_id: str
    success: bool  # the Dagster runs themselves
    checks: tuple[CheckLine, ...]
    error: str = ""
    interrupted: bool = False  # Ctrl-C / SIGTERM: stopped early, no verdicts or report
    other_run_ids: tuple[str, ...] = ()  # a fanned-out night's other targets' runs

    @property
    def run_ids(self) -> tuple[str, ...]:
        """Every ``nightly_suite`` run of the night (one per target)."""
        return (self.run_id, *self.other_run_ids)

    @property
    def blocking_failed(self) -> bool:
        return any(c.failed and c.blocking for c in self.checks)


def latest_night() -> date:
    """The newest complete night (partition); tonight's is not over yet."""
    return date.fromisoformat(NIGHTS.get_last_partition_key())


def check_night(night: date) -> None:
    """``SelectionError`` naming the valid range unless ``night`` is a partition."""
    if not NIGHTS.has_partition_key(night.isoformat()):
        raise SelectionError(
            f"night {night} is not a partition: from {NIGHTS.get_first_partition_key()} "
            f"to {NIGHTS.get_last_partition_key()} (tonight's partition opens tomorrow)"
        )


def _check_lines(result: RunResult) -> tuple[CheckLine, ...]:
    """Every check of the run with the values the asset reported beside its verdict."""
    lines = []
    for e in result.get_asset_check_evaluations():
        values = {k: v.value for k, v in e.metadata.items()}
        observed = values.get("observed")
        lines.append(
            CheckLine(
                e.asset_key.path[0],
                "/".join(e.asset_key.path[1:]),
                e.check_name,
                e.passed,
                e.severity == dg.AssetCheckSeverity.ERROR,
                e.description or "",
                float(observed) if isinstance(observed, int | float) else None,
                str(values.get("threshold", "")),
                str(values.get("unit", "")),
                str(values.get("metric", "")),
            )
        )
    return (*lines, *_not_measurable_lines(result))


def _not_measurable_lines(result: RunResult) -> list[CheckLine]:
    """The checks a test reported not measurable on this target: no evaluation, the reason
    on the asset they judge (``assets.suite.NOT_MEASURABLE_KEY``)."""
    by_key = {t.spec.key: t.spec for t in TESTS}
    lines = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        test, *asset = materialization.asset_key.path
        for key, value in materialization.metadata.items():
            if not key.startswith(NOT_MEASURABLE_KEY) or test not in by_key:
                continue
            check = by_key[test].check(key.removeprefix(NOT_MEASURABLE_KEY))
            lines.append(
                CheckLine(
                    test,
                    "/".join(asset),
                    check.name,
                    False,
                    check.severity == "error",
                    f"{NOT_MEASURABLE}: {value.value}",
                    None,
                    check.expr,
                    check.unit,
                    check.metric,
                    not_measurable=str(value.value),
                )
            )
    return lines


def _selection(tests: list[SuiteTest] | None) -> list[dg.AssetKey] | None:
    """Every metric asset of ``tests``; None: the whole job (the engine self-check too)."""
    if tests is None:
        return None
    return [dg.AssetKey([t.spec.key, name]) for t in tests for name in t.spec.assets]


def _alive(pid: int, started: float | None) -> bool:
    """Whether ``pid`` is still the process that started a run at ``started``."""
    try:
        return started is None or psutil.Process(pid).create_time() <= started + 1
    except psutil.Error:
        return False


def reap_dead_runs(instance: dg.DagsterInstance, store: MetricStore) -> list[str]:
    """Runs of ``nightly run`` on this host whose process is gone (kill -9, a crash):
    marked failed in Dagster (which has no crashed status), ``crashed`` in the store
    (``failed`` stays for runs that ran and failed), their pool slots freed. What was
    reaped. Their stacks are reaped by ``reap_dead_stacks`` (``run_night``)."""
    reaped = []
    host = socket.gethostname()
    active = dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
        tags={TRIGGER_TAG: CLI_TRIGGER, HOST_TAG: host},
    )
    for record in instance.get_run_records(filters=active):
        run = record.dagster_run
        pid = int(run.tags.get(PID_TAG, "0"))
        if pid and _alive(pid, record.start_time):
            continue
        message = f"run {run.run_id}: its process (pid {pid}) is gone; marked crashed"
        instance.report_run_failed(run, message)
        free_slots(instance, run.run_id)
        _, closed = close_store_run(store, instance, run.run_id, "crashed")
        reaped.append(f"{message} ({closed})")
    return reaped


def suite_run_config(
    target: str,
    profile: Profile,
    home: Home,
    knobs: Mapping[str, object] | None = None,
    log_level: str = "INFO",
    entry: str = "",
) -> dict[str, object]:
    """The suite job's run config, its resources configured as a launch from the UI would
    configure them. ``knobs``: the embedded platform's fault knobs (in the run's config,
    so the UI shows the night was broken); ``entry``: which target of a target file."""
    target_config: dict[str, object] = {
        "target": target,
        "home": str(home.root),
        "testbed_knobs": json.dumps(dict(knobs)) if knobs else "",
    }
    if entry:
        target_config["entry"] = entry
    return {
        "loggers": {"console": {"config": {"log_level": log_level}}},
        "resources": {
            "target": {"config": target_config},
            "store": {"config": {"path": str(home.store)}},
            "profile": {"config": {"name": profile.name}},
        },
    }


def cli_tags(profile: Profile) -> dict[str, str]:
    """The tags of a run ``nightly`` started in this process (``reap_dead_runs`` reads them)."""
    return {
        PROFILE_TAG: profile.name,
        TRIGGER_TAG: CLI_TRIGGER,
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
    }


@dataclass(frozen=True)
class SuiteRun:
    """One ``nightly_suite`` run as it ended: its store row closed, its checks read."""

    run_id: str
    outcome: RunStatus
    checks: tuple[CheckLine, ...]
    interrupted: bool
    errors: tuple[str, ...]  # why it failed, beyond a blocking check


def execute_suite(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    store: MetricStore,
    night: date,
    tests: list[SuiteTest] | None,
    run_config: Mapping[str, object],
    tags: Mapping[str, str],
    *,
    run_id: str | None = None,
    say: Say = lambda _: None,
    celery: CeleryBroker | None = None,
) -> SuiteRun:
    """Run ``job`` (a ``nightly_suite``) for ``night`` and close its store row: in this
    process, or with ``celery`` through ``dagster.execute_job`` and the Celery executor
    (the steps on that broker's workers; this process orchestrates)."""
    suite: RunResult
    if celery is None:
        suite = job.execute_in_process(
            instance=instance,
            partition_key=night.isoformat(),
            asset_selection=_selection(tests),
            raise_on_error=False,
            run_config=dict(run_config),
            tags=dict(tags),
            run_id=run_id,
        )
    else:
        suite = dg.execute_job(
            celery_suite_job(),
            instance,
            run_config={**run_config, **celery.run_config()},
            tags={**tags, PARTITION_TAG: night.isoformat()},
            asset_selection=_selection(tests),
            raise_on_error=False,
        )
    interrupted = was_interrupted(suite)
    outcome: RunStatus = (
        "canceled" if interrupted else SUITE_OUTCOMES[instance.get_run_by_id(suite.run_id).status]
    )
    ok, message = close_store_run(store, instance, suite.run_id, outcome)
    if not ok:
        say(message)
    checks = _check_lines(suite)
    errors = []
    blocked = any(c.failed and c.blocking for c in checks)
    if not suite.success and not interrupted:
        reasons = step_failures(suite)
        if reasons or not blocked:  # failed for another reason than a check
            errors.append("; ".join(reasons) or "the tests' run failed")
    return SuiteRun(suite.run_id, outcome, checks, interrupted, tuple(errors))


INTERRUPTED = (
    "interrupted: the running test stopped early and the platform was stopped; "
    "the night's verdicts and report were not updated"
)


def run_history(
    instance: dg.DagsterInstance,
    night: date,
    run_config: Mapping[str, object],
    suite_run_id: str,
    outcome: RunStatus,
) -> bool:
    """The night's ``nightly_history`` run after its suite run(s); whether it succeeded."""
    history = defs.resolve_job_def(nightly_history_job.name).execute_in_process(
        instance=instance,
        partition_key=night.isoformat(),
        raise_on_error=False,
        run_config={
            "loggers": run_config["loggers"],
            "resources": {"store": run_config["resources"]["store"]},  # type: ignore[index]
        },
        tags=history_tags(suite_run_id, outcome, CLI_TRIGGER),
    )
    return history.success


def reap_before_night(
    home: Home, instance: dg.DagsterInstance, store: MetricStore, say: Say
) -> None:
    """A dead run's faults reverted, its stacks and runs reaped, before a night starts."""
    for line in FaultLedger(home.chaos_ledger).revert_leftovers():
        say(f"a dead run's fault: {line}")
    for line in reap_dead_stacks(home.stack):  # its processes are gone before its row closes
        say(line)
    for line in reap_dead_runs(instance, store):
        say(line)


def run_night(
    tests: list[SuiteTest] | None,
    profile: Profile,
    night: date,
    *,
    target: str,
    home: Home,
    knobs: Mapping[str, object] | None = None,
    say=lambda _: None,
    log_level: str = "INFO",
    celery: CeleryBroker | None = None,
) -> NightRun:
    """Run ``nightly_suite`` for ``night`` (only ``tests`` when given), then, unless it was
    interrupted, ``nightly_history``; ``say`` gets a line for what the user should know,
    and Dagster's console log shows ``log_level`` and above. ``knobs``: the embedded
    platform's fault knobs (in the run's config, so the UI shows the night was broken).
    ``celery``: the suite's steps run on the Celery workers of that broker
    (``automation.executors``); None: in this process."""
    check_night(night)
    store = MetricStore(home.store)
    run_config = suite_run_config(target, profile, home, knobs, log_level)
    with open_instance(home) as instance:
        reap_before_night(home, instance, store, say)
        holders = slot_holders(instance, TARGET_POOL)
        if holders:
            say(f"the {TARGET_POOL!r} pool is held by run(s) {', '.join(holders)}: waiting")
        job = defs.resolve_job_def(nightly_suite_job.name)
        suite = execute_suite(
            job,
            instance,
            store,
            night,
            tests,
            run_config,
            cli_tags(profile),
            say=say,
            celery=celery,
        )
        if suite.interrupted:
            return NightRun(night, suite.run_id, False, suite.checks, INTERRUPTED, interrupted=True)
        errors = list(suite.errors)
        history = suite.outcome in HISTORY_AFTER
        if history and not run_history(instance, night, run_config, suite.run_id, suite.outcome):
            errors.append("the night's verdicts/report failed")
    compact_after_night(store, say)  # reports its own errors: never fails the night
    return NightRun(night, suite.run_id, not errors, suite.checks, "; ".join(errors))


def write_junit(run: NightRun, path: Path) -> None:
    """One testcase per check; a failed blocking check is a failure, a failed WARN check
    is reported in system-out (CI stays green on warnings, as the exit status does), a
    check not measurable on this target is skipped with the reason."""
    suite = ET.Element(
        "testsuite",
        name=f"nightly {run.night}",
        tests=str(len(run.checks)),
        failures=str(sum(c.failed and c.blocking for c in run.checks)),
        errors="0" if run.success else "1",
        skipped=str(sum(bool(c.not_measurable) for c in run.checks)),
    )
    if not run.success:
        case = ET.SubElement(suite, "testcase", classname="nightly", name="run")
        ET.SubElement(case, "error", message=run.error[:500])
    for c in run.checks:
        case = ET.SubElement(suite, "testcase", classname=c.test, name=c.name)
        properties = ET.SubElement(case, "properties")
        for name, value in (
            ("asset", c.asset),
            ("severity", "blocking" if c.blocking else "warn"),
            ("metric", c.metric),
            ("threshold", c.threshold),
            ("unit", c.unit),
            ("observed", "" if c.observed is None else repr(c.observed)),
        ):
            ET.SubElement(properties, "property", name=name, value=value)
        verdict = f"observed {c.observed_text}, threshold {c.threshold_text}"
        if c.not_measurable:
            ET.SubElement(case, "skipped", message=f"{NOT_MEASURABLE}: {c.not_measurable}"[:500])
        elif not c.passed and c.blocking:
            ET.SubElement(case, "failure", message=f"{verdict}: {c.description}"[:500])
        elif not c.passed:
            ET.SubElement(case, "system-out").text = f"WARN: {verdict}: {c.description}"
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


logging.getLogger("dagster").propagate = False
