"""The platform faults, their ledger and the experiment around them, on real parts: a
real fault proxy process, real processes to pause, chaoslib's own validation. (The
faults on the embedded platform's processes run in the chaos tests' own modules.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from nightly_pipeline.chaos.chaostoolkit_adapter import ExperimentInvalid, validate
from nightly_pipeline.chaos.control import ProxyControl, ProxyControlError
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.chaos.platform_faults import FaultError
from nightly_pipeline.chaos.session import FaultNotRevertedError, open_session, session_of
from nightly_pipeline.suite.chaos_run import FaultStep, build_experiment, python_activity
from tests.chaos.helpers import ProxyBackend, proxy_process


def _enabled(control: str) -> bool:
    with ProxyControl(control, proxy="redis") as c:
        return bool(c.proxy()["enabled"])


def test_a_link_fault_is_recorded_while_injected_and_reverted_on_exit(proxy, tmp_path) -> None:
    ledger = FaultLedger(tmp_path / "active.json")
    with open_session(ProxyBackend(proxy), ledger, "run-1") as session:
        session.inject("cut", "link_down", {"proxy": "redis"})
        assert not _enabled(proxy)
        (entry,) = ledger.active().values()
        assert entry["type"] == "link_down" and entry["leftover"]["proxy"] == "redis"
        session.inject("slow", "link_toxic", {"proxy": "redis", "toxic": "latency"})
    assert _enabled(proxy)  # both reverted by the session, in finally
    with ProxyControl(proxy, proxy="redis") as c:
        assert c.toxics() == []
    assert ledger.active() == {}
    assert [w.name for w in session.windows] == ["cut", "slow"]
    assert all(w.reverted_at is not None for w in session.windows)


def test_a_fault_that_cannot_be_injected_leaves_nothing_recorded_and_stops_the_rest(
    proxy, tmp_path
) -> None:
    """A pid that is gone: the fault fails with its cause, no ledger entry stays, and the
    session injects nothing after it (the experiment's later faults are refused)."""
    backend = ProxyBackend(proxy)
    backend.process_names = lambda: ("consumer",)  # type: ignore[method-assign]
    ledger = FaultLedger(tmp_path / "active.json")
    with open_session(backend, ledger, "run-1") as session:
        with pytest.raises(FaultError, match="consumer is not running"):
            session.inject("kill", "kill", {"process": "consumer"})
        with pytest.raises(RuntimeError, match="'cut' not injected: fault 'kill' could not be"):
            session.inject("cut", "link_down", {"proxy": "redis"})
    assert _enabled(proxy) and ledger.active() == {}
    with (
        open_session(backend, ledger, "run-2") as session,
        pytest.raises(ValueError, match="no proxy 'postgres'; known: redis"),
    ):
        session.inject("cut", "link_down", {"proxy": "postgres"})
    with (
        open_session(backend, ledger, "run-3") as session,
        pytest.raises(ValueError, match="unknown platform fault 'flood'"),
    ):
        session.inject("x", "flood", {})
    assert ledger.active() == {}


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.chaos.session import open_session
sys.path.insert(0, {tests!r})
from tests.chaos.helpers import ProxyBackend

with open_session(ProxyBackend({control!r}), FaultLedger(Path({ledger!r})), "run-killed") as s:
    s.inject("cut", "link_down", {{"proxy": "redis"}})
    s.inject("slow", "link_toxic", {{"proxy": "redis", "toxic": "latency"}})
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_fault_that_cannot_be_reverted_fails_loudly_and_stays_in_the_ledger(tmp_path) -> None:
    """The proxy dies with its link down: the revert fails with the cause, the session's
    exit raises naming the fault, and the ledger keeps it for the next start."""
    ledger = FaultLedger(tmp_path / "active.json")
    with (
        proxy_process() as (control, child),
        pytest.raises(FaultNotRevertedError, match=r"left in place.*cut: POST .*refused"),
        open_session(ProxyBackend(control), ledger, "run-1") as session,
    ):
        session.inject("cut", "link_down", {"proxy": "redis"})
        child.kill()
        child.wait(timeout=10)
        with pytest.raises(ProxyControlError):
            session.revert("cut")
        assert session.windows[0].revert_error
    (entry,) = ledger.active().values()
    assert entry["type"] == "link_down" and entry["run_id"] == "run-1"


def test_a_killed_runs_faults_are_reverted_at_the_next_start(proxy, tmp_path) -> None:
    """A run SIGKILLed with a proxy disabled and a toxic on it: its ledger names both;
    the next start reverts them from the ledger alone."""
    ledger_path = tmp_path / "active.json"
    script = KILLED_RUN.format(
        tests=str(Path(__file__).parents[2]), control=proxy, ledger=str(ledger_path)
    )
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert not _enabled(proxy)
    ledger = FaultLedger(ledger_path)
    assert sorted(e["type"] for e in ledger.active().values()) == ["link_down", "link_toxic"]

    lines = ledger.revert_leftovers()

    assert len(lines) == 2 and all("run-killed" in line for line in lines), lines
    assert _enabled(proxy)
    with ProxyControl(proxy, proxy="redis") as c:
        assert c.toxics() == []
    assert ledger.active() == {}


def test_a_live_runs_faults_are_left_alone(proxy, tmp_path) -> None:
    ledger = FaultLedger(tmp_path / "active.json")
    with open_session(ProxyBackend(proxy), ledger, "run-live") as session:
        session.inject("cut", "link_down", {"proxy": "redis"})
        assert ledger.revert_leftovers() == []  # its owner (this process) is alive
        assert not _enabled(proxy)


def test_a_paused_process_of_a_dead_run_is_resumed(tmp_path) -> None:
    """``pause``'s leftover names the pid and its start time: SIGCONT goes to that
    process only (a reused pid is left alone)."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        sleeper.send_signal(signal.SIGSTOP)
        identity = {"pid": sleeper.pid, "create_time": psutil.Process(sleeper.pid).create_time()}
        ledger = FaultLedger(tmp_path / "active.json")
        entry = ledger.record("run-dead", "pause", {"type": "pause"})
        ledger.update(entry, identity)
        with ledger._entries() as entries:  # as a dead run leaves it: its owner is gone
            entries[entry]["owner"] = {"pid": 2**22 + 1, "create_time": 0.0}
        reused = dict(identity, create_time=identity["create_time"] - 100)
        other = ledger.record("run-dead", "pause", {"type": "pause"})
        ledger.update(other, reused)
        with ledger._entries() as entries:
            entries[other]["owner"] = {"pid": 2**22 + 1, "create_time": 0.0}

        lines = ledger.revert_leftovers()

        assert any(f"sent SIGCONT to pid {sleeper.pid}" in line for line in lines), lines
        assert any("is gone: nothing to resume" in line for line in lines), lines
        assert psutil.Process(sleeper.pid).status() != psutil.STATUS_STOPPED
    finally:
        sleeper.kill()
        sleeper.wait()


def test_activities_name_the_missing_session() -> None:
    with pytest.raises(RuntimeError, match="'nightly_session'"):
        session_of({"base_url": "http://127.0.0.1:1"})


def test_the_experiment_is_one_timeline_of_injections_reverts_and_probes() -> None:
    probe = python_activity("probe", "pel", "stream_pending", stream="s", group="g")
    steps = [
        FaultStep("kill", "kill", {"process": "consumer"}, at_s=3.0, hold_s=5.0, probes=[probe]),
        FaultStep("slow", "link_toxic", {"proxy": "redis"}, at_s=1.5, hold_s=1.5),
    ]
    experiment = build_experiment("t", "d", steps, {"nightly_session": "x"})
    method = [(a["name"], a.get("pauses", {}).get("before")) for a in experiment["method"]]
    assert method == [
        ("inject-slow", 1.5),
        ("inject-kill", 1.5),  # 3.0: the kill comes before the revert at the same time
        ("pel", None),
        ("revert-slow", None),
        ("revert-kill", 5.0),
        ("ready-again", None),
    ]
    assert experiment["rollbacks"][0]["provider"]["func"] == "revert_all"
    validate(experiment)


def test_an_experiment_that_does_not_validate_is_refused_with_chaoslibs_words() -> None:
    experiment = build_experiment("t", "d", [FaultStep("cut", "link_down")], {})
    experiment["method"][0]["provider"]["arguments"]["nope"] = 1
    with pytest.raises(ExperimentInvalid, match="argument 'nope' is not part of the function"):
        validate(experiment)
    del experiment["description"]
    with pytest.raises(ExperimentInvalid, match="experiment requires a description"):
        validate(experiment)
