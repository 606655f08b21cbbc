"""How many processes a ``kill -9`` of ``nightly run`` leaves behind (Issue 15, item 1).

    PYTHONPATH=$PWD .venv/bin/python bench/killed_run_leftovers.py [--tests 06]

Starts ``nightly run --profile ci --tests 06`` in a fresh temporary NIGHTLY_HOME, waits
(bounded) until its embedded stack wrote ``endpoints.json`` (PostgreSQL, Redis, the
proxies, the API, the dispatcher and the consumer are up), SIGKILLs the ``nightly``
process alone (not its group), then counts, until none is left or 15 s passed, the
process trees of the stack's recorded pids (each pid, its descendants and its process
group) that are still alive. Whatever is still alive at the end is SIGKILLed by pid, and the home is
removed. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

DEADLINE_S = 240.0


def _trees(pids: dict[str, int]) -> dict[int, str]:
    """Alive processes of the recorded pids: each, its children and its group."""
    found: dict[int, str] = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.Error):
            leader = psutil.Process(pid)
            if leader.status() != psutil.STATUS_ZOMBIE:
                found[pid] = name
            for child in leader.children(recursive=True):
                found.setdefault(child.pid, f"{name} child")
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            pgid = os.getpgid(proc.info["pid"])
            for name, pid in pids.items():
                if pgid == pid:
                    found.setdefault(proc.info["pid"], f"{name} group")
    return found


def _wait_for(path_glob: str, root: Path, child: subprocess.Popen[bytes]) -> Path:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        hits = sorted(root.glob(path_glob))
        if hits:
            return hits[0]
        if child.poll() is not None:
            raise SystemExit(f"nightly run exited ({child.returncode}) before its stack was up")
        time.sleep(0.2)
    raise SystemExit(f"no {path_glob} under {root} within {DEADLINE_S:g} s")


def _settle(pids: dict[str, int], seconds: float) -> dict[int, str]:
    deadline = time.monotonic() + seconds
    left = _trees(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _trees(pids)
    return left


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", default="06")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="nightly-kill9-"))
    env = {**os.environ, "NIGHTLY_HOME": str(home)}
    argv = [sys.executable, "-m", "nightly_pipeline.cli", "run", "--profile", "ci"]
    argv += ["--tests", args.tests, "--night", "2026-11-20"]
    log = open(home / "run.log", "wb")  # noqa: SIM115 - closed in finally
    child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    pids: dict[str, int] = {}
    try:
        endpoints = _wait_for("stack/*/endpoints.json", home, child)
        pids = json.loads(endpoints.read_text())["pids"]
        before = _trees(pids)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        left = _settle(pids, 15.0)
        print(f"stack processes before kill -9: {len(before)} ({len(pids)} recorded trees)")
        print(f"left 15 s after kill -9: {len(left)}")
        for pid, name in sorted(left.items()):
            print(f"  {pid} {name}")
        return 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in _trees(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        log.close()
        for location in home.glob("stack/*/postgres.location"):  # data kept outside the home
            shutil.rmtree(location.read_text().strip(), ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
