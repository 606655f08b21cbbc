"""A run whose process died is ``crashed`` in the store, not ``failed`` (Issue 15, item 1):
``nightly run`` reaping its own dead run, and a daemon-launched run failed by run
monitoring because its run worker was gone. A run that ran and failed stays ``failed``.

Real Dagster instance and DuckDB store. Run monitoring itself needs the daemon and a run
launcher: here its verdict is reported the way it reports it (``report_run_failed`` with
its message), which is what ``close_store_run`` reads."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg

from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import reap_dead_runs
from nightly_pipeline.automation.suite_runs import close_store_run
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore, RunRecord

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
