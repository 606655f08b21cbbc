"""A night fanned out over two targets (``nightly run --targets 2``: two embedded
platforms, one worker process and one Dagster run each) writes the same rows as the same
night on one target: the same tests with the same statuses, the same run-wide
thresholds and asset checks with the same blocking verdicts, the same metric names.

Real platforms, real Dagster, real store; the ci profile and three tests (02, 03, 06:
the quickest at ci with checks that do not hang on timing) to keep it short. Then Ctrl-C
and kill -9 of a fanned-out ``nightly run`` (smoke, Tests 01 and 04, interrupted while
both targets load): nothing of the night is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import psutil
import pytest

from nightly_pipeline.automation.fanned_night import run_fanned_night
from nightly_pipeline.automation.fanout import EXPECTED_END_TAG, PLAN_TAG, TARGET_TAG, target_pool
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.automation.run import NightRun, run_night
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.night_plan import night_places, plan_night
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.testbed.stack.owner import RECORD
from tests.dagster.night_rows import metric_names
from tests.processes import group_killed_on_exit, interrupt, kill_all, tree, wait_gone

NIGHT = date(2026, 11, 18)
TESTS = select_tests("02,03,06")
CI = PROFILES["ci"]


@dataclass(frozen=True)
class Night:
    home: Home
    run: NightRun
    wall_s: float
    left: list[str]  # processes the night started still running after it


def _night(root: Path, targets: int | None) -> Night:
    home = Home.at(root)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    if targets is None:
        run = run_night(TESTS, CI, NIGHT, target="embedded", home=home)
    else:
        places = night_places("embedded", targets)
        plan = plan_night(TESTS, CI, list(places))
        run = run_fanned_night(plan, CI, NIGHT, places=places, home=home, say=print)
    wall = time.monotonic() - started
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid not in before and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(proc.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return Night(home, run, wall, left)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Night, Night]:
    one = _night(tmp_path_factory.mktemp("one-target"), None)
    two = _night(tmp_path_factory.mktemp("two-targets"), 2)
    # A figure for the note, not a bound: the ratio on this machine.
    print(f"\nci {len(TESTS)} tests: one target {one.wall_s:.1f} s, two {two.wall_s:.1f} s")
    return one, two


def _rows(home: Home) -> dict[str, object]:
    """The night's rows as the comparison reads them: every test with its status, every
    run-wide threshold (with its verdict when it is blocking), every metric name."""
    store = MetricStore(home.store)
    results = store.recent_results(limit_nights=1)
    thresholds = store.threshold_results(NIGHT).filter(scope="run")
    metrics = store.metrics(since=NIGHT)
    return {
        "tests": sorted(zip(results["test"], results["status"], strict=True)),
        "thresholds": sorted(
            (r["test"], r["metric"], r["expression"], r["severity"], _verdict(r))
            for r in thresholds.iter_rows(named=True)
        ),
        "metric names": metric_names(metrics),
    }


def _verdict(row: dict) -> bool | None:
    """A blocking verdict; None for a WARN one. A WARN threshold is a latency bound
    (e.g. Test 03's ``p(99)<100`` ms invalidation delay) that two platforms sharing this
    machine's 2 cores may miss while one alone meets it: a fact about the machine's load,
    which the comparison must not blame on the fan-out. Its presence is still compared."""
    return row["passed"] if row["severity"] == "error" else None


def test_two_targets_write_the_same_rows_as_one(nights):
    one, two = nights
    assert one.run.success, one.run.error
    assert two.run.success, two.run.error
    rows_one, rows_two = _rows(one.home), _rows(two.home)
    assert [t for t, _ in rows_one["tests"]] == sorted(t.spec.key for t in TESTS)
    for what in rows_one:
        assert rows_two[what] == rows_one[what], what


def test_two_targets_report_the_same_asset_checks_as_one(nights):
    one, two = nights

    def checks(run: NightRun) -> list[tuple[str, str, str, bool | None]]:
        """Every check; the verdict of the blocking ones (``_verdict``: why not WARN)."""
        return sorted(
            (c.test, c.asset, c.name, c.passed if c.blocking else None) for c in run.checks
        )

    assert checks(one.run) and checks(two.run) == checks(one.run)


def test_each_target_is_one_run_in_its_own_pool_with_its_plan_shown(nights):
    _, two = nights
    assert len(two.run.run_ids) == 2
    with open_instance(two.home) as instance:
        records = [instance.get_run_record_by_id(i) for i in two.run.run_ids]
        targets = set()
        for record in records:
            run = record.dagster_run
            target = run.tags[TARGET_TAG]
            targets.add(target)
            assert run.tags[PLAN_TAG].startswith(f"{target}: ")
            assert EXPECTED_END_TAG in run.tags
            snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            assert {s.pool for s in snapshot.steps} == {target_pool(target)}
            assert run.status == dg.DagsterRunStatus.SUCCESS
    assert targets == {"embedded-1", "embedded-2"}
    # The targets ran side by side: each run started before the other ended.
    first, second = sorted(records, key=lambda r: r.start_time)
    assert second.start_time < first.end_time


def test_the_fanned_out_night_leaves_no_process_behind(nights):
    one, two = nights
    assert one.left == [] and two.left == []


RUN_MARK = "NIGHTLY_FANOUT_TEST"  # names the interrupted night's processes, wherever they go


def _marked(mark: str) -> list[str]:
    """Processes (but this one) whose environment carries ``RUN_MARK=mark``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(RUN_MARK) == mark:
                found.append(" ".join(proc.cmdline()))
        except psutil.Error:
            continue
    return found


def _start_loaded_night(home: Path) -> tuple[subprocess.Popen[str], list[Path]]:
    """``nightly run --profile smoke --tests 01,04 --targets 2`` in its own session, once
    both targets' loads run (bounded); the night and its worker logs."""
    argv = ["--store", str(home / "metrics.duckdb"), "run", "--profile", "smoke"]
    argv += ["--tests", "01,04", "--targets", "2", "--night", NIGHT.isoformat()]
    child = subprocess.Popen(
        [sys.executable, "-m", "nightly_pipeline.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, RUN_MARK: str(home)},
    )
    logs: list[Path] = []
    for _ in range(600):  # bounded: 5 min for both platforms to start and load
        logs = sorted(home.glob("runs/night-*/*.log"))
        if len(logs) == 2 and all("msg/s" in log.read_text() for log in logs):
            return child, logs
        if child.poll() is not None:
            break
        time.sleep(0.5)
    os.killpg(child.pid, signal.SIGKILL)
    out, _ = child.communicate()
    pytest.fail(f"the loads never started: {out[-2000:]} {[g.read_text()[-2000:] for g in logs]}")


def test_kill_9_of_a_fanned_out_night_takes_every_worker_and_platform(tmp_path):
    """``kill -9`` of ``nightly run`` while both targets load: the workers die with it
    (PR_SET_PDEATHSIG) and their platforms with them; the next ``nightly run`` marks both
    targets' runs crashed in the store."""
    home = tmp_path / "home"
    child, _ = _start_loaded_night(home)
    alive: set[int] = set()
    try:
        records = [json.loads(r.read_text()) for r in home.glob(f"stack/*/{RECORD}")]
        assert len(records) == 2
        pids = {p["pid"] for r in records for p in r["processes"]}
        workers = {c.pid for c in psutil.Process(child.pid).children()}
        alive = tree(pids | workers)
        assert len(workers) == 2 and pids | workers <= alive
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert wait_gone(alive, timeout_s=30) == set()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        kill_all(alive)
    argv = ["--store", str(home / "metrics.duckdb"), "run", "--profile", "ci", "--tests", "06"]
    second = subprocess.run(
        [sys.executable, "-m", "nightly_pipeline.cli", *argv, "--night", NIGHT.isoformat()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = second.stdout + second.stderr
    assert out.count("marked crashed") == 2, out[-3000:]
    statuses = MetricStore(home / "metrics.duckdb").runs()["status"].to_list()
    assert sorted(statuses)[:2] == ["crashed", "crashed"] and len(statuses) == 3, statuses


def test_ctrl_c_stops_every_target_and_leaves_nothing(tmp_path):
    """Ctrl-C (SIGINT to ``nightly run``'s process group, as a terminal sends it) while
    both targets' loads run: each worker stops its test and its platform, the night exits
    130, both Dagster runs and store rows end canceled, no process of the night is left.
    (Smoke, Tests 01 and 04: a minute each, interrupted a few seconds into their loads.)"""
    home = tmp_path / "home"
    child, _ = _start_loaded_night(home)
    with group_killed_on_exit(child):
        out = interrupt(child)
    assert child.returncode == 130, out
    assert "interrupted" in out
    assert _marked(str(home)) == []
    statuses = MetricStore(home / "metrics.duckdb").runs()["status"].to_list()
    assert statuses == ["canceled", "canceled"], out
