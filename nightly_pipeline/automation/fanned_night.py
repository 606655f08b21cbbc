"""``nightly run --targets N``: the night fanned out over N targets, as planned.

The plan (``suite.night_plan``) is shown before anything starts; each target's tests
then run as one ``nightly_suite`` run (``automation.fanout``) in a worker process of its
own (``automation.target_worker``), all targets at once; when every target is done, the
night's ``nightly_history`` runs once over all of them, then the store's compaction.

The workers run in their own sessions, so a Ctrl-C at the terminal reaches this process
only, which hands SIGINT/SIGTERM to each worker once: each stops its running test
gracefully and stops its platform, as a one-target ``nightly run`` does. A worker
still running past the suite's ``dagster/max_runtime`` (plus a grace) is terminated.
A ``kill -9`` of this process kills the workers (``PR_SET_PDEATHSIG``) and, with them,
their platforms; the next ``nightly run`` marks their Dagster runs crashed
(``run.reap_dead_runs``: each run carries its worker's pid).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType

from dagster._core.utils import make_new_run_id  # the id format Dagster gives a run

from nightly_pipeline.automation.after_night import compact_after_night
from nightly_pipeline.automation.fanout import plan_tags
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.jobs import MAX_RUNTIME_S
from nightly_pipeline.automation.run import (
    INTERRUPTED,
    NightRun,
    Say,
    check_night,
    reap_before_night,
    run_history,
    suite_run_config,
)
from nightly_pipeline.automation.suite_runs import HISTORY_AFTER
from nightly_pipeline.automation.target_worker import Assignment, WorkerResult
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore, RunStatus
from nightly_pipeline.suite.night_plan import NightPlan, PlacedTarget
from nightly_pipeline.suite.profiles import Profile
from nightly_pipeline.testbed.stack.spawn import die_with_parent

GRACE_S = 300.0
"""How long past ``MAX_RUNTIME_S`` a worker may take to stop before it is killed."""
STOP_WAIT_S = 120.0
"""How long a worker gets to stop after SIGTERM before SIGKILL."""


@dataclass
class _Worker:
    name: str
    assignment: Assignment
    log: Path
    process: subprocess.Popen[bytes]


def run_fanned_night(
    plan: NightPlan,
    profile: Profile,
    night: date,
    *,
    places: Mapping[str, PlacedTarget],
    home: Home,
    knobs: Mapping[str, object] | None = None,
    say: Say = lambda _: None,
    log_level: str = "INFO",
) -> NightRun:
    """Run ``plan``'s night, target by target in parallel; ``places`` says where each of
    the plan's targets is. Returns the night with every target's checks."""
    check_night(night)
    store = MetricStore(home.store)
    for line in plan.lines():
        say(f"plan: {line}")
    with open_instance(home) as instance:
        reap_before_night(home, instance, store, say)
        starts_at = datetime.now(UTC)
        night_dir = home.runs / f"night-{night}-{starts_at:%Y%m%dT%H%M%S}"
        night_dir.mkdir(parents=True, exist_ok=True)
        workers = []
        with _forwarding_signals(workers) as stopping:
            for target in plan.targets:
                if not target.tests or stopping:
                    continue  # no tests, or Ctrl-C came: start no more workers
                place = places[target.name]
                assignment = Assignment(
                    target_name=target.name,
                    target=place.target,
                    entry=place.entry,
                    tests=target.keys,
                    profile=profile.name,
                    night=night.isoformat(),
                    home=str(home.root),
                    run_id=make_new_run_id(),
                    tags=plan_tags(plan, target, starts_at),
                    result=str(night_dir / f"{target.name}.result.json"),
                    knobs=dict(knobs or {}),
                    log_level=log_level,
                )
                workers.append(_start(assignment, night_dir))
                say(
                    f"{target.name}: Dagster run {assignment.run_id} "
                    f"(log {night_dir / (target.name + '.log')})"
                )
            results, errors = _wait_all(workers, say)
        run_ids = tuple(w.assignment.run_id for w in workers) or ("",)
        checks = tuple(c for r in results for c in r.checks)
        if stopping or any(r.interrupted for r in results):
            return NightRun(
                night, run_ids[0], False, checks, INTERRUPTED, True, other_run_ids=run_ids[1:]
            )
        errors += [f"{r.run_id}: {e}" for r in results for e in r.errors]
        outcomes = {r.outcome for r in results}
        worst: RunStatus = "failed" if "failed" in outcomes else "succeeded"
        if len(results) == len(workers) and outcomes <= HISTORY_AFTER:
            config = suite_run_config("embedded", profile, home, log_level=log_level)
            if not run_history(instance, night, config, ",".join(run_ids), worst):
                errors.append("the night's verdicts/report failed")
    compact_after_night(store, say)
    return NightRun(
        night, run_ids[0], not errors, checks, "; ".join(errors), other_run_ids=run_ids[1:]
    )


def _start(assignment: Assignment, night_dir: Path) -> _Worker:
    """A worker process for ``assignment``, in its own session, logging to a file."""
    path = night_dir / f"{assignment.target_name}.assignment.json"
    assignment.write(path)
    log = night_dir / f"{assignment.target_name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nightly_pipeline.automation.target_worker", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the terminal's Ctrl-C comes through us, once
            preexec_fn=die_with_parent(),  # a kill -9 here takes the workers (and stacks)
        )
    return _Worker(assignment.target_name, assignment, log, process)


def _wait_all(workers: list[_Worker], say: Say) -> tuple[list[WorkerResult], list[str]]:
    """Wait for every worker (bounded by the suite's max runtime); their results, and
    what went wrong with the workers that left none."""
    deadline = time.monotonic() + MAX_RUNTIME_S + GRACE_S
    results, errors = [], []
    for worker in workers:
        try:
            code = worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = _stop(worker)
            errors.append(f"{worker.name}: still running past the night's max runtime: stopped")
        result = Path(worker.assignment.result)
        if result.exists():
            results.append(WorkerResult.read(result))
            say(f"{worker.name}: done ({results[-1].outcome})")
        else:
            errors.append(
                f"{worker.name}: its worker exited with status {code} and no result; "
                f"see {worker.log}"
            )
    return results, errors


def _stop(worker: _Worker) -> int:
    """SIGTERM, then SIGKILL after ``STOP_WAIT_S``: the worker's exit status."""
    worker.process.terminate()
    try:
        return worker.process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        return worker.process.wait()


@contextlib.contextmanager
def _forwarding_signals(workers: list[_Worker]) -> Iterator[list[int]]:
    """While the night runs, SIGINT and SIGTERM go to every worker (by pid) instead of
    raising here; on the way out (an error here included) no worker is left running.
    Yields the signals received (empty: none), so no worker starts after one."""
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for worker in workers:
            if worker.process.poll() is None:
                _stop(worker)
