"""Ctrl-C during a load: the run stops gracefully, then the caller's handler gets the
signal — instead of its exception being raised inside an event loop callback, swallowed
there, and the run waiting forever (what Dagster's handler did before
``deferred_interrupts``).

The load runs in a child process (its own session, so the test can send Ctrl-C to its
whole process group as a terminal would, workers included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nightly_pipeline.loadgen.interrupts import deferred_interrupts
from tests.loadgen.interrupted_load import LOAD_S
from tests.loadgen.servers import http_server

SCRIPT = Path(__file__).with_name("interrupted_load.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_the_load_then_the_callers_handler_raises(workers) -> None:
    with http_server() as srv:
        child = subprocess.Popen(
            [sys.executable, str(SCRIPT), srv.url, str(workers)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "READY"
            os.killpg(child.pid, signal.SIGINT)
            # The bound only catches a hang: the load alone would run LOAD_S.
            out, _ = child.communicate(timeout=LOAD_S + 30)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    assert child.returncode == 130, out
    lines = [line for line in out.splitlines() if line != "READY"]
    assert lines and lines[0].startswith("INTERRUPTED after"), out
    assert float(lines[0].split()[2]) < LOAD_S  # stopped early, not at the end of the load


def test_signals_are_recorded_then_raised_again_for_the_previous_handler() -> None:
    seen = []
    previous = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        with deferred_interrupts() as interrupts:
            signal.raise_signal(signal.SIGINT)
            assert interrupts.reason == "interrupted by SIGINT"
            assert seen == []
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_nothing_is_taken_over_without_a_python_handler() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with deferred_interrupts():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)
