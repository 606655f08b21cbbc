"""A run whose process died is ``crashed`` in the store, not ``failed`` (Issue 15, item 1):
``nightly run`` reaping its own dead run, and a daemon-launched run failed by run
monitoring because its run worker was gone. A run that ran and failed stays ``failed``.
A run worker SIGKILLed while its step (a multiprocess-executor child) holds the embedded
stack takes the step and the stack with it.

Real Dagster instance and DuckDB store. Run monitoring itself needs the daemon and a run
launcher: here its verdict is reported the way it reports it (``report_run_failed`` with
its message), which is what ``close_store_run`` reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import reap_dead_runs
from nightly_pipeline.automation.suite_runs import close_store_run
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore, RunRecord
from nightly_pipeline.testbed.stack.owner import RECORD
from nightly_pipeline.testbed.stack.reaper import reap_dead_stacks
from tests.processes import kill_all, tree, wait_gone

NIGHT = date(2026, 11, 20)


def _started_run(instance: dg.DagsterInstance, store: MetricStore, tags: dict[str, str]) -> str:
    run = instance.add_run(
        dg.DagsterRun(job_name="nightly_suite", status=dg.DagsterRunStatus.STARTED, tags=tags)
    )
    store.write_run(RunRecord(run.run_id, NIGHT, "ci", "embedded", datetime.now(UTC)))
    return run.run_id


def _status(store: MetricStore, run_id: str) -> str:
    runs = store.runs()
    return runs.filter(runs["run_id"] == run_id)["status"].item()


DYING_RUN = """
import os, socket, sys
from datetime import UTC, date, datetime
import dagster as dg
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore, RunRecord

home = Home.at(sys.argv[1])

@dg.asset
def dies(context) -> None:
    MetricStore(home.store).write_run(
        RunRecord(context.run_id, date(2026, 11, 20), "ci", "embedded", datetime.now(UTC))
    )
    os.kill(os.getpid(), 9)  # the run's process dies with its row 'running'

job = dg.define_asset_job("nightly_suite", selection=[dies])
defs = dg.Definitions(assets=[dies], jobs=[job])
with open_instance(home) as instance:
    defs.resolve_job_def("nightly_suite").execute_in_process(
        instance=instance,
        tags={"nightly/trigger": "cli", "nightly/pid": str(os.getpid()),
              "nightly/host": socket.gethostname()},
    )
"""


def test_a_dead_nightly_run_is_closed_crashed(tmp_path: Path) -> None:
    """A real in-process run SIGKILLed mid-step: its row stays 'running' until the next
    ``nightly run`` reaps it, which closes it 'crashed' (Dagster: FAILURE)."""
    home = Home.at(tmp_path / "home")
    script = tmp_path / "dies.py"
    script.write_text(DYING_RUN)
    died = subprocess.run(
        [sys.executable, str(script), str(home.root)], capture_output=True, timeout=120
    )
    assert died.returncode == -9, died.stderr.decode()[-2000:]
    store = MetricStore(home.store)
    (dead,) = store.runs()["run_id"].to_list()
    assert _status(store, dead) == "running"
    with open_instance(home) as instance:
        (line,) = reap_dead_runs(instance, store)

        assert dead in line and "marked crashed" in line and f"run {dead} crashed" in line
        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert _status(store, dead) == "crashed"


def test_run_monitoring_finding_the_worker_dead_is_crashed_a_failure_is_failed(
    tmp_path: Path,
) -> None:
    home = Home.at(tmp_path / "home")
    store = MetricStore(home.store)
    with open_instance(home) as instance:
        worker_gone = _started_run(instance, store, {})
        failed = _started_run(instance, store, {})
        instance.report_run_failed(
            instance.get_run_by_id(worker_gone),
            f"Detected run worker status WorkerStatus.FAILED: 'Run worker process is not "
            f"running'. Marking run {worker_gone} as failed.",
        )
        instance.report_run_failed(
            instance.get_run_by_id(failed), "Execution of run failed. Steps failed: ['06']."
        )

        assert close_store_run(store, instance, worker_gone, "failed") == (
            True,
            f"metric store: run {worker_gone} crashed",
        )
        assert close_store_run(store, instance, failed, "failed")[0]
    assert _status(store, worker_gone) == "crashed"
    assert _status(store, failed) == "failed"


RUN_WORKER = """
import os, socket, time
from datetime import UTC, date, datetime
import dagster as dg
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import HOST_TAG, PID_TAG
from nightly_pipeline.automation.suite_runs import CLI_TRIGGER, TRIGGER_TAG
from nightly_pipeline.home import Home
from nightly_pipeline.resources.target import TargetResource
from nightly_pipeline.store import MetricStore, RunRecord

@dg.op
def holds_the_stack(context, target: TargetResource) -> None:
    home = Home.from_env(os.environ)
    MetricStore(home.store).write_run(
        RunRecord(context.run_id, date(2026, 11, 20), "ci", "embedded", datetime.now(UTC))
    )
    assert target.current is not None  # the embedded platform starts in this step process
    (home.root / "step.pid").write_text(str(os.getpid()))
    time.sleep(300)  # a test under way; the run worker is killed meanwhile

@dg.job(executor_def=dg.multiprocess_executor,
        resource_defs={"target": TargetResource(users=5)})
def nightly_suite():
    holds_the_stack()

if __name__ == "__main__":
    with open_instance(Home.from_env(os.environ)) as instance:
        dg.execute_job(
            dg.reconstructable(nightly_suite), instance=instance,
            tags={TRIGGER_TAG: CLI_TRIGGER, PID_TAG: str(os.getpid()),
                  HOST_TAG: socket.gethostname()},
        )
"""
STACK_UP_S = 240.0


def _wait_for_step(home: Home, worker: subprocess.Popen[bytes], log: Path) -> tuple[int, Path]:
    """The step's pid and its stack's run dir, once the stack is up (bounded)."""
    deadline = time.monotonic() + STACK_UP_S
    while time.monotonic() < deadline:
        marker = home.root / "step.pid"
        if marker.is_file() and marker.read_text():
            (record,) = home.stack.glob(f"*/{RECORD}")
            return int(marker.read_text()), record.parent
        assert worker.poll() is None, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no stack within {STACK_UP_S:g} s: {log.read_text()[-3000:]}")


def test_a_killed_run_worker_takes_its_step_and_stack_and_is_reaped_crashed(
    tmp_path: Path,
) -> None:
    """A real run worker (``execute_job``, multiprocess executor) whose step process starts
    the embedded stack; ``kill -9`` of the worker, as run monitoring does: the step and
    every stack process are gone soon after (not at the test's end), and the next start
    reaps the stack's data and closes the run's row ``crashed``."""
    home = Home.at(tmp_path / "home")
    script = tmp_path / "run_worker.py"
    script.write_text(RUN_WORKER)
    log = tmp_path / "worker.log"
    env = {**os.environ, "NIGHTLY_HOME": str(home.root)}
    alive: set[int] = set()
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, str(script)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        step, run_dir = _wait_for_step(home, worker, log)
        record = json.loads((run_dir / RECORD).read_text())
        pids = {p["name"]: p["pid"] for p in record["processes"]}
        assert {"postgres", "redis", "api", "dispatcher", "consumer"} <= set(pids)
        alive = tree([step, *pids.values()])
        assert step in alive

        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()

        assert wait_gone([step, *pids.values()], timeout_s=30.0) == set()
        store = MetricStore(home.store)
        assert _status(store, run_dir.name) == "running"  # until the next start
        with open_instance(home) as instance:
            (line,) = reap_dead_runs(instance, store)
        assert run_dir.name in line and "marked crashed" in line
        assert _status(store, run_dir.name) == "crashed"
        (reaped,) = reap_dead_stacks(home.stack)
        assert str(run_dir) in reaped
        assert not (run_dir / RECORD).exists()
        assert not any(os.path.exists(p) for p in record["remove"])
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        kill_all(alive)
