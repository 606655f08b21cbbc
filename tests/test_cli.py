"""The ``nightly`` command end to end (real echo target, real DuckDB file)."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from nightly_pipeline.cli import main
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.catalog import TESTS
from tests.processes import group_killed_on_exit, interrupt, processes_left


def test_history_of_an_empty_store_says_what_to_do(tmp_path, capsys) -> None:
    assert main(["--store", str(tmp_path / "m.duckdb"), "history"]) == 0
    assert "nightly selfcheck" in capsys.readouterr().out


def test_selfcheck_records_a_night_that_history_shows(tmp_path, capsys) -> None:
    store = str(tmp_path / "m.duckdb")
    summary = tmp_path / "summary.json"
    code = main(
        [
            "--store",
            store,
            "selfcheck",
            "--rate",
            "100",
            "--duration",
            "2",
            "--night",
            "2026-11-21",
            "--summary-export",
            str(summary),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "engine_selfcheck: passed" in out
    assert '"http_reqs"' in summary.read_text()
    assert main(["--store", store, "history"]) == 0
    history = capsys.readouterr().out
    assert "2026-11-21" in history and "engine_selfcheck" in history and "passed" in history


def test_selfcheck_exits_1_when_the_generator_cannot_keep_its_schedule(tmp_path, capsys) -> None:
    """100,000 req/s from one generator process is past what Python keeps on any machine
    (about 14,000 here): iterations are dropped, the blocking thresholds fail, exit 1,
    and the night is stored as failed."""
    store = str(tmp_path / "m.duckdb")
    argv = ["selfcheck", "--rate", "100000", "--duration", "1", "--night", "2026-11-21"]
    code = main(["--store", store, *argv])
    out = capsys.readouterr().out
    assert code == 1, out
    assert re.search(r"dropped_iterations count==0\s+run\s+[\d,]+\s+FAIL", out), out
    assert "engine_selfcheck: failed" in out
    (row,) = MetricStore(store).recent_results().iter_rows(named=True)
    assert (row["test"], row["status"]) == ("engine_selfcheck", "failed")
    assert MetricStore(store).runs()["status"].to_list() == ["failed"]


def test_a_store_from_a_newer_schema_is_refused_with_the_fix(tmp_path, capsys) -> None:
    path = tmp_path / "m.duckdb"
    assert main(["--store", str(path), "history"]) == 0
    with duckdb.connect(str(path)) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, now())")
    before = path.read_bytes()
    assert main(["--store", str(path), "history"]) == 2
    err = capsys.readouterr().err
    assert "999" in err and "NIGHTLY_HOME" in err
    assert path.read_bytes() == before


def test_bad_night_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--store", str(tmp_path / "m.duckdb"), "selfcheck", "--night", "23/11/2026"])
    assert exc.value.code == 2


def test_report_evaluates_the_latest_night_and_writes_the_page(tmp_path, capsys) -> None:
    from tests.dagster.history_fixture import seed_history

    store = tmp_path / "home" / "metrics.duckdb"
    seed_history(store)
    assert main(["--store", str(store), "report"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-22: 1 regression" in out
    assert (tmp_path / "home" / "reports" / "2026-11-22.html").is_file()
    assert (tmp_path / "home" / "reports" / "index.html").is_file()


def test_report_of_an_empty_store_says_what_to_do(tmp_path, capsys) -> None:
    assert main(["--store", str(tmp_path / "m.duckdb"), "report"]) == 1
    assert "nightly selfcheck" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--tests", "01,42"], "unknown test id(s) 42; valid: 01 (message_soak)"),
        (["run", "--profile", "huge"], "unknown profile 'huge'; valid: ci, smoke, nightly"),
        (["run", "--night", "2020-01-01"], "is not a partition: from 2026-11-01"),
        (
            ["run", "--targets", "2", "--executor", "celery", "--celery-broker", "redis://x/0"],
            "--executor celery runs one target's night: drop --targets",
        ),
    ],
)
def test_run_refuses_bad_selections_with_the_valid_ones(tmp_path, capsys, argv, message) -> None:
    assert main(["--store", str(tmp_path / "m.duckdb"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_plan_shows_each_target_and_the_nights_expected_end(tmp_path, capsys) -> None:
    """``nightly plan``: the night over 1 and 4 targets; nothing starts. On 4 targets the
    nightly profile ends within the plan's 120 minutes (computed, not run)."""
    argv = ["--store", str(tmp_path / "m.duckdb"), "plan", "--profile", "nightly"]
    assert main([*argv, "--targets", "1,4"]) == 0
    out = capsys.readouterr().out
    one, four = out.split("## 4 target(s)")
    assert "embedded-1: " in one and "14_ws_longevity" in one and "embedded-2" not in one
    assert all(f"embedded-{i}: " in four for i in range(1, 5))
    ends = re.findall(r"expected to end (\d+):(\d\d):\d\d", out)
    assert int(ends[0][0]) >= 3  # one after another: ~4 h
    assert int(ends[1][0]) * 60 + int(ends[1][1]) <= 120
    assert not (tmp_path / "m.duckdb").exists()  # nothing ran, nothing stored


def test_plan_refuses_more_targets_than_the_file_lists(tmp_path, capsys) -> None:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"targets": [{"name": "a"}, {"name": "b"}]}))
    assert main(["plan", "--target", str(path), "--targets", "3"]) == 2
    assert "lists 2 target(s) (a, b)" in capsys.readouterr().err


def test_run_ci_profile_end_to_end_writes_rows_and_junit(ci_night) -> None:
    """``nightly run --profile ci`` with no ``--tests``: every test of the catalog runs
    and passes, the table lists each, the JUnit file has no failure, the report is
    written and the run's row is closed (the session's ci night, tests/ci_night.py)."""
    assert ci_night.code == 0, ci_night.out
    for test in TESTS:
        key = test.spec.key
        assert re.search(rf"^{key}\s+passed", ci_night.out, re.MULTILINE), (key, ci_night.out)
    junit = ci_night.junit.read_text()
    assert 'failures="0"' in junit and "zero_message_loss" in junit
    assert ci_night.home.reports.is_dir()
    assert MetricStore(ci_night.home.store).runs()["status"].to_list() == ["succeeded"]
    assert ci_night.left == []


RUN_MARK = "NIGHTLY_TEST_RUN"  # names an interrupted run's processes, wherever they end up


def _interrupt_run(home: Path, tests: str, started: str, after_s: float = 0.0) -> str:
    """``nightly run`` of ``tests`` at ci, Ctrl-C (SIGINT to the whole process group, as a
    terminal sends it) ``after_s`` after a line containing ``started``; its output."""
    run = ["run", "--profile", "ci", "--tests", tests, "--night", "2026-11-20"]
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nightly_pipeline.cli",
            "--store",
            str(home / "metrics.duckdb"),
            *run,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, RUN_MARK: str(home)},  # inherited by every process it starts
    )
    seen = []
    with group_killed_on_exit(child):
        assert child.stdout is not None
        for line in child.stdout:  # ends at EOF if the run dies first
            seen.append(line)
            if started in line:
                break
        time.sleep(after_s)
        out = interrupt(child)
    out = "".join(seen) + out
    assert child.returncode == 130, out
    assert "nightly run: interrupted" in out
    assert processes_left(home) == []
    assert MetricStore(home / "metrics.duckdb").runs()["status"].to_list() == ["canceled"]
    return out


def test_ctrl_c_during_a_run_stops_it_tears_down_and_exits_130(tmp_path) -> None:
    """Ctrl-C while Test 01's load runs: the load stops early, the test is not retried, no
    other test starts, the platform is stopped (no process names the run's directory),
    exit status 130."""
    out = _interrupt_run(tmp_path / "home", "01,02", "msg/s")  # Test 01's load has started
    assert "02_conversation_crud: " not in out  # its progress line: it never started


def test_ctrl_c_during_a_fault_reverts_it(tmp_path) -> None:
    """Ctrl-C while Test 09 has Redis cut off from the dispatcher (0.9 s to 2.1 s of its
    ci load): the fault is reverted and forgotten (the ledger is empty), nothing else is
    injected, the platform is stopped, exit 130."""
    home = tmp_path / "home"
    # the first progress line comes 1 s into the load
    _interrupt_run(home, "09", "09_redis_partition load 1/", after_s=0.3)
    ledger = home / "chaos" / "active.json"
    assert ledger.is_file()  # the fault was recorded, so it was injected
    assert json.loads(ledger.read_text()) == {}


def test_ctrl_c_during_test_12_leaves_none_of_its_1000_sockets_listeners(tmp_path) -> None:
    """Ctrl-C while Test 12's 1,000 sockets are open (its load has started): exit 130,
    the platform stopped, and none of the four listener processes left."""
    home = tmp_path / "home"
    _interrupt_run(home, "12", "12_multi_user_conversation load 1/")
    # this run's (marked in their environment), not another test's
    listeners = processes_left("nightly_pipeline.suite.ws_listen", environ={RUN_MARK: str(home)})
    assert listeners == []


def test_bad_input_is_refused_at_the_door_every_problem_once(tmp_path, capsys) -> None:
    """A target file missing keys (and naming a host that is not allowed), an unknown
    profile and an unknown test: all listed once, exit 2, no traceback, nothing started
    (no Dagster instance created)."""
    target = tmp_path / "staging.json"
    target.write_text('{"name": "staging", "base_url": "http://10.1.2.3", "ws_url": "ws://x"}')
    home = tmp_path / "home"
    argv = ["--store", str(home / "metrics.duckdb"), "run", "--profile", "weekly"]
    code = main([*argv, "--tests", "01,42", "--target", str(target)])
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing started" in err and "Traceback" not in err
    for problem in (
        "unknown profile 'weekly'",
        "unknown test id(s) 42",
        "missing key 'users'",
        "missing key 'password_env'",
    ):
        assert err.count(problem) == 1, (problem, err)
    assert not (home / "dagster").exists()

    target.write_text(
        json.dumps(
            {
                "name": "staging",
                "base_url": "http://10.1.2.3:8080",
                "ws_url": "ws://10.1.2.3:8080/v1/ws",
                "users": ["u1"],
                "password_env": "HOME",
            }
        )
    )
    assert main([*argv[:-2], "--profile", "ci", "--target", str(target)]) == 2
    err = capsys.readouterr().err
    assert "base_url: target host '10.1.2.3'" in err and "add it to allow_hosts" in err
    assert "ws_url: target host '10.1.2.3'" in err and "Traceback" not in err


def test_an_experiment_for_a_test_that_injects_no_faults_is_refused(tmp_path, capsys) -> None:
    experiment = {
        "title": "mine",
        "description": "a user's experiment",
        "method": [
            {"type": "action", "name": "n", "provider": {"type": "process", "path": "true"}}
        ],
    }
    (tmp_path / "mine.json").write_text(json.dumps(experiment))
    target = tmp_path / "local.json"
    local = {
        "name": "local",
        "base_url": "http://127.0.0.1:8080",
        "ws_url": "ws://127.0.0.1:8080/v1/ws",
        "users": ["u1"],
        "password_env": "HOME",
        "chaos_experiments": {"05": "mine.json", "09": "mine.json"},
    }
    target.write_text(json.dumps(local))
    home = tmp_path / "home"
    argv = ["--store", str(home / "metrics.duckdb"), "run", "--profile", "ci"]
    assert main([*argv, "--target", str(target)]) == 2
    err = capsys.readouterr().err
    assert "chaos_experiments names test(s) 05, which inject no faults" in err
    assert "the chaos tests are 08, 09, 10, 11" in err and "Traceback" not in err


PROGRESS_LINE = re.compile(
    r"06_sustained_login load (\d+)/6 s  [\d.]+/s  p95 ([\d.]+ ms|-)  errors \d+  dropped \d+"
)


def _nightly_run_06(home: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nightly_pipeline.cli",
        "--store",
        str(home / "metrics.duckdb"),
        "run",
        "--profile",
        "ci",
        "--tests",
        "06",
    ]


def test_progress_in_a_log_is_plain_lines(tmp_path) -> None:
    """Not a terminal (CI logs): the Dagster log carries the running test's figures."""
    done = subprocess.run(
        _nightly_run_06(tmp_path / "home"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = PROGRESS_LINE.findall(done.stderr)
    assert lines, done.stderr[-3000:]
    assert "\x1b[" not in done.stdout  # no terminal control codes in a log


def test_progress_on_a_terminal_is_a_live_table(tmp_path) -> None:
    """On a terminal (a pty here): a table redrawn as the test runs, its elapsed seconds
    counting up, and Dagster's INFO lines kept out of the way (the UI has them)."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        _nightly_run_06(tmp_path / "home"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        child.wait(timeout=600)
    finally:
        os.close(leader)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    text = b"".join(chunks).decode("utf-8", "replace")
    assert child.returncode == 0, text[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    elapsed = {
        int(m.group(1))
        for m in re.finditer(r"06_sustained_login\s+load (\d+)/6 s\s+[\d.]+/s", plain)
    }
    assert len(elapsed) >= 3, plain[-3000:]  # redrawn as the seconds passed
    assert "\x1b[2K" in text  # lines rewritten in place
    assert " - INFO - " not in plain
    assert "login_success_over_99_9pct" in plain  # the closing table
