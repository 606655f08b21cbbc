"""One target's share of a fanned-out night, in its own process:
``python -m nightly_pipeline.automation.target_worker ASSIGNMENT.json``.

Why a process per target rather than a thread: a Dagster in-process run, and the load
engine's graceful stop, take Ctrl-C and SIGTERM on the process's main thread only; in a
thread a signal would never reach the running test, which would then run to its end
with its platform. ``automation.fanned_night`` starts one worker per target and sends
each the signals it receives.

The assignment (``Assignment``, JSON) says which tests, on which target, under which
Dagster run id and tags; the worker writes what happened (``WorkerResult``) to
``result`` and exits 0, or 130 when it was interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from nightly_pipeline.report.night_summary import CheckLine

INTERRUPTED_EXIT = 130


@dataclass(frozen=True)
class Assignment:
    target_name: str  # the plan's name for the target (its pool: target/<name>)
    target: str  # "embedded" or a target file
    entry: str  # which of the file's targets ("" for embedded or a one-target file)
    tests: tuple[str, ...]  # test keys in the plan's order
    profile: str
    night: str  # YYYY-MM-DD
    home: str
    run_id: str
    tags: dict[str, str]
    result: str  # where to write the WorkerResult
    knobs: dict[str, object] = dataclasses.field(default_factory=dict)
    log_level: str = "INFO"

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def read(cls, path: Path) -> Assignment:
        raw = json.loads(path.read_text())
        return cls(**{**raw, "tests": tuple(raw["tests"])})


@dataclass(frozen=True)
class WorkerResult:
    run_id: str
    outcome: str  # the store's runs.status
    interrupted: bool
    errors: tuple[str, ...]
    checks: tuple[CheckLine, ...]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def read(cls, path: Path) -> WorkerResult:
        raw = json.loads(path.read_text())
        return cls(
            raw["run_id"],
            raw["outcome"],
            raw["interrupted"],
            tuple(raw["errors"]),
            tuple(CheckLine(**c) for c in raw["checks"]),
        )


def run_assignment(job: Assignment) -> WorkerResult:
    """Run the target's tests as one ``nightly_suite`` run; its store row is closed."""
    from nightly_pipeline.automation.fanout import target_job
    from nightly_pipeline.automation.instance import open_instance
    from nightly_pipeline.automation.run import cli_tags, execute_suite, suite_run_config
    from nightly_pipeline.home import Home
    from nightly_pipeline.store import MetricStore
    from nightly_pipeline.suite.catalog import TESTS
    from nightly_pipeline.suite.profiles import profile_named

    home = Home.at(job.home)
    profile = profile_named(job.profile)
    config = suite_run_config(job.target, profile, home, job.knobs, job.log_level, entry=job.entry)
    tests = [t for key in job.tests for t in TESTS if t.spec.key == key]
    with open_instance(home) as instance:
        suite = execute_suite(
            target_job(job.target_name, job.tests),
            instance,
            MetricStore(home.store),
            date.fromisoformat(job.night),
            tests,
            config,
            {**job.tags, **cli_tags(profile)},  # this process's pid: reap_dead_runs reads it
            run_id=job.run_id,
            say=lambda line: print(f"{job.target_name}: {line}", file=sys.stderr),
        )
    return WorkerResult(suite.run_id, suite.outcome, suite.interrupted, suite.errors, suite.checks)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m nightly_pipeline.automation.target_worker ASSIGNMENT.json")
        return 2
    job = Assignment.read(Path(argv[0]))
    result = run_assignment(job)
    result.write(Path(job.result))
    return INTERRUPTED_EXIT if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
