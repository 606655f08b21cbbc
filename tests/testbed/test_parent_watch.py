"""A process that follows its parent (``parent_watch``) dies soon after the parent is
SIGKILLed, and not before. Real processes: a parent Python process starts a child with
``multiprocessing`` (spawn, as Dagster's multiprocess executor starts a step) that
follows it; the test kills the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from tests.processes import kill_all, wait_gone

PARENT = """
import multiprocessing, sys, time
from pathlib import Path

def child(marker: str) -> None:
    from nightly_pipeline.testbed.stack.parent_watch import die_with_multiprocessing_parent
    followed = die_with_multiprocessing_parent()
    Path(marker).write_text(f"{multiprocessing.current_process().pid} {followed}")
    time.sleep(300)

if __name__ == "__main__":
    proc = multiprocessing.get_context("spawn").Process(target=child, args=(sys.argv[1],))
    proc.start()
    time.sleep(300)
"""


def test_a_spawned_child_dies_with_its_killed_parent(tmp_path: Path) -> None:
    script, marker = tmp_path / "parent.py", tmp_path / "child"
    script.write_text(textwrap.dedent(PARENT))
    parent = subprocess.Popen([sys.executable, str(script), str(marker)])
    child = 0
    try:
        deadline = time.monotonic() + 60.0
        while not (marker.is_file() and marker.read_text()) and time.monotonic() < deadline:
            assert parent.poll() is None
            time.sleep(0.1)
        child_pid, followed = marker.read_text().split()
        child = int(child_pid)
        assert int(followed) == parent.pid
        time.sleep(1.0)  # a few polls: a live parent is followed, not left
        assert psutil.Process(child).is_running()

        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()

        assert wait_gone([child], timeout_s=10.0) == set()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child:
            kill_all([child])


def test_a_process_not_started_by_multiprocessing_follows_nobody() -> None:
    """This pytest process (or its xdist worker) is its run's own: nothing to follow."""
    from nightly_pipeline.testbed.stack.parent_watch import die_with_multiprocessing_parent

    assert die_with_multiprocessing_parent() is None
