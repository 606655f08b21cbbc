"""``nightly run``: materialise the selected tests (and the night's verdicts and report)
for one night, in this process, through real Dagster; then summarise and write JUnit."""

import contextlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import dagster as dg
from dagster._core.execution.plan.objects import ErrorSource  # no public name for it

from nightly_pipeline.assets.history import nightly_report, regressions
from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.assets.suite import SUITE_ASSETS, check_name
from nightly_pipeline.resources import (
    MetricStoreResource,
    ProfileResource,
    TargetResource,
)
from nightly_pipeline.store import MetricStore, RunNotFoundError, RunStatus
from nightly_pipeline.suite.catalog import SelectionError
from nightly_pipeline.suite.spec import Profile, TestSpec


@dataclass(frozen=True)
class CheckLine:
    test: str
    name: str
    passed: bool
    blocking: bool
    description: str


@dataclass(frozen=True)
class NightRun:
    night: date
    success: bool  # the Dagster run itself
    checks: tuple[CheckLine, ...]
    error: str = ""
    interrupted: bool = False  # Ctrl-C / SIGTERM: stopped early, no verdicts or report

    @property
    def blocking_failed(self) -> bool:
        return any(not c.passed and c.blocking for c in self.checks)


def latest_night() -> date:
    """The newest complete night (partition); tonight's is not over yet."""
    return date.fromisoformat(NIGHTS.get_last_partition_key())


def _assets_for(tests: list[TestSpec]) -> list[dg.AssetsDefinition]:
    by_name = {a.node_def.name: a for a in SUITE_ASSETS}
    missing = [t.key for t in tests if t.key not in by_name]
    if missing:
        ready = ", ".join(sorted(by_name)) or "none"
        raise SelectionError(f"no scenario yet for {', '.join(missing)}; runnable: {ready}")
    return [by_name[t.key] for t in tests]


def _check_lines(result: dg.ExecuteInProcessResult, tests: list[TestSpec]) -> tuple[CheckLine, ...]:
    names = {check_name(c): c for t in tests for c in t.checks}
    lines = []
    for evaluation in result.get_asset_check_evaluations():
        check = names.get(evaluation.check_name)
        lines.append(
            CheckLine(
                evaluation.asset_key.path[0],
                evaluation.check_name,
                evaluation.passed,
                check is not None and check.severity == "error",
                evaluation.description or "",
            )
        )
    return tuple(lines)


def _finish_store_run(
    store_path: Path, result: dg.ExecuteInProcessResult, interrupted: bool
) -> None:
    """Close the ``runs`` row the test assets opened (none if the platform never started)."""
    status: RunStatus = "succeeded" if result.success else "failed"
    if interrupted:
        status = "canceled"
    with contextlib.suppress(RunNotFoundError):
        MetricStore(store_path).finish_run(result.run_id, status, datetime.now(UTC))


def was_interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether Ctrl-C or SIGTERM stopped the run (a step failed as interrupted)."""
    if result.dagster_run.status == dg.DagsterRunStatus.CANCELED:
        return True
    return any(
        event.is_step_failure
        and event.step_failure_data is not None
        and event.step_failure_data.error_source == ErrorSource.INTERRUPT
        for event in result.all_events
    )


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """``step: cause`` for each step that failed for another reason than a blocking check;
    a retried step's cause is its last attempt's (under Dagster's "Exceeded max_retries")."""
    reasons = []
    for event in result.all_events:
        if not event.is_step_failure or event.step_failure_data is None:
            continue
        error = event.step_failure_data.error
        if error is None or error.cls_name == "DagsterAssetCheckFailedError":
            continue
        messages = []
        while error is not None:
            messages.append(error.message.strip())
            error = error.cause
        reasons.append(f"{event.step_key}: {' <- '.join(messages)}")
    return reasons


def run_night(
    tests: list[TestSpec],
    profile: Profile,
    night: date,
    *,
    target: str,
    store_path: Path,
) -> NightRun:
    """Materialise ``tests`` for ``night`` (then regressions and the report)."""
    if not NIGHTS.has_partition_key(night.isoformat()):
        raise SelectionError(
            f"night {night} is not a partition: from {NIGHTS.get_first_partition_key()} "
            f"to {NIGHTS.get_last_partition_key()} (tonight's partition opens tomorrow)"
        )
    home = store_path.parent
    resources = {
        "target": TargetResource(target=target, run_root=str(home)),
        "store": MetricStoreResource(path=str(store_path)),
        "profile": ProfileResource(name=profile.name),
    }
    # The UI's instance when DAGSTER_HOME is set (the run shows up there), else in memory.
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None

    def materialize(assets: list[dg.AssetsDefinition], keys: tuple[str, ...]):
        return dg.materialize(
            assets,
            partition_key=night.isoformat(),
            resources={k: resources[k] for k in keys},
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            tags={"nightly/profile": profile.name, "nightly/trigger": "cli"},
        )

    result = materialize(_assets_for(tests), ("target", "store", "profile"))
    interrupted = was_interrupted(result)
    _finish_store_run(store_path, result, interrupted)
    if interrupted:
        return NightRun(
            night,
            False,
            _check_lines(result, tests),
            "interrupted: the running test stopped early and the platform was stopped; "
            "the night's verdicts and report were not updated",
            interrupted=True,
        )
    # A failed blocking check skips everything downstream in its run, so the night's
    # verdicts and report run apart: a failing night is the one that needs its report.
    history = materialize([regressions, nightly_report], ("store",))
    lines = _check_lines(result, tests)
    error = ""
    blocked = any(not c.passed and c.blocking for c in lines)
    if not result.success:
        reasons = step_failures(result)
        if reasons or not blocked:  # failed for another reason than a check
            error = "; ".join(reasons) or "the tests' run failed"
    if not history.success:
        error = (error + "; " if error else "") + "the night's verdicts/report failed"
    return NightRun(night, not error, tuple(lines), error)


def write_junit(run: NightRun, path: Path) -> None:
    """One testcase per check; a failed blocking check is a failure, a failed WARN check
    is reported in system-out (CI stays green on warnings, as the exit status does)."""
    suite = ET.Element(
        "testsuite",
        name=f"nightly {run.night}",
        tests=str(len(run.checks)),
        failures=str(sum(not c.passed and c.blocking for c in run.checks)),
        errors="0" if run.success else "1",
    )
    if not run.success:
        case = ET.SubElement(suite, "testcase", classname="nightly", name="run")
        ET.SubElement(case, "error", message=run.error[:500])
    for c in run.checks:
        case = ET.SubElement(suite, "testcase", classname=c.test, name=c.name)
        if not c.passed and c.blocking:
            ET.SubElement(case, "failure", message=c.description[:500])
        elif not c.passed:
            ET.SubElement(case, "system-out").text = f"WARN: {c.description}"
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


logging.getLogger("dagster").propagate = False
