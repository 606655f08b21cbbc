"""``kill -9`` of a running night, then a new run (Issue 15, item 1): no process of the
first is left, its stack's data is removed and its store row is ``crashed``. Two real
``nightly run`` processes of Test 06 (the quickest at ci) on one temporary home; the
second is a whole run, as the next night would be."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore
from nightly_pipeline.testbed.stack.owner import RECORD
from nightly_pipeline.testbed.stack.reaper import PREFIX
from tests.processes import kill_all, tree, wait_gone

RUN = ["run", "--profile", "ci", "--tests", "06", "--night", "2026-11-20"]
STACK_UP_S = 240.0


def _wait_mid_test(home: Home, child: subprocess.Popen[bytes], log: Path) -> Path:
    """Once Test 06's load runs (its first progress line: its row is written, its
    platform up), the stack's directory; bounded."""
    deadline = time.monotonic() + STACK_UP_S
    while time.monotonic() < deadline:
        if "06_sustained_login load" in log.read_text(errors="replace"):
            (endpoints,) = home.stack.glob("*/endpoints.json")
            return endpoints.parent
        assert child.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(
        f"Test 06 not under load within {STACK_UP_S:g} s: {log.read_text()[-3000:]}"
    )


def test_kill_9_mid_night_then_a_new_run_leaves_nothing_and_closes_it_crashed(
    tmp_path: Path,
) -> None:
    home = Home.at(tmp_path / "home")
    env = {**os.environ, "NIGHTLY_HOME": str(home.root)}
    argv = [sys.executable, "-m", "nightly_pipeline.cli", *RUN]
    log = tmp_path / "first.log"
    alive: set[int] = set()
    with open(log, "wb") as out:
        first = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        run_dir = _wait_mid_test(home, first, log)
        record = json.loads((run_dir / RECORD).read_text())
        pids = {p["name"]: p["pid"] for p in record["processes"]}
        assert {"postgres", "redis", "api", "dispatcher", "consumer"} <= set(pids)
        alive = tree(pids.values())

        os.kill(first.pid, signal.SIGKILL)
        first.wait()

        assert wait_gone(alive) == set()  # they died with it (PDEATHSIG)
        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        out = second.stdout + second.stderr
        # 1: one of Test 06's blocking checks failed (a verdict on a shared machine's
        # latency, not on the reap); anything else is an error of the run
        assert second.returncode in (0, 1), out[-3000:]
        assert "run failed:" not in out, out[-3000:]
        assert f"{PREFIX} {run_dir}" in out, out[-3000:]
        assert "marked crashed" in out, out[-3000:]
        assert tree(pids.values()) == set()
        assert list(home.stack.glob(f"*/{RECORD}")) == []  # the second's teardown: none
        assert not any(os.path.exists(p) for p in record["remove"])
        runs = dict(MetricStore(home.store).runs().select("run_id", "status").rows())
        assert runs.pop(run_dir.name) == "crashed"
        assert len(runs) == 1 and "crashed" not in runs.values()  # the second run's row
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        kill_all(alive)
