"""The README's "Using it" commands as a new user types them: from the project root, the
venv's ``nightly`` on PATH, ``NIGHTLY_HOME`` unset (so the home is the relative
``./.nightly``, made absolute by the command). ``nightly ui`` then shows the run that
``nightly run`` recorded. (``--profile nightly`` and ``--target`` are the same command at
other settings; the CLI tests and the target tests cover their inputs.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from nightly_pipeline.testbed.stack.probes import free_port
from tests.processes import processes_left

BIN = Path(sys.executable).parent


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NIGHTLY_HOME", "DAGSTER_HOME")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `. .venv/bin/activate`
    return env


def _nightly(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nightly", *args], cwd=root, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _stop_group(child: subprocess.Popen) -> int:
    """SIGINT to the child's process group, as Ctrl-C in its terminal; SIGKILL if it hangs."""
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return child.returncode


def test_using_it_from_the_project_root_without_nightly_home(project_root: Path) -> None:
    run = _nightly(project_root, "run", "--profile", "ci", "--tests", "06", "--junit", "junit.xml")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    home = project_root / ".nightly"
    assert (home / "metrics.duckdb").is_file()
    assert (home / "dagster" / "dagster.yaml").is_file()
    assert (home / "reports" / "index.html").is_file()
    assert (project_root / "junit.xml").is_file()
    assert "06_sustained_login" in run.stdout and "login_success_over_99_9pct" in run.stdout

    selfcheck = _nightly(project_root, "selfcheck", "--rate", "200", "--duration", "2")
    assert selfcheck.returncode == 0, selfcheck.stderr[-2000:]
    history = _nightly(project_root, "history", "--nights", "7")
    assert history.returncode == 0 and "06_sustained_login" in history.stdout
    report = _nightly(project_root, "report")
    assert report.returncode == 0, report.stderr[-2000:]
    assert str(home / "reports") in report.stdout


def test_stack_up_from_the_project_root_without_nightly_home(project_root: Path) -> None:
    """PostgreSQL changes into its data directory: with a relative home it could not
    create its socket lock file. Up, the endpoints printed; Ctrl-C, everything stopped."""
    child = subprocess.Popen(
        ["nightly", "stack", "up", "--users", "5"],
        cwd=project_root,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:  # ends at EOF if it dies first
            lines.append(line)
            if line.startswith("}"):  # the end of the endpoints' JSON
                break
        text = "".join(lines)
        endpoints = json.loads(text[text.index("{\n") :])
        assert httpx.get(endpoints["base_url"] + "/readyz", timeout=5).status_code == 200
    finally:
        code = _stop_group(child)
    assert code == 130, "".join(lines)[-3000:]
    assert str(project_root / ".nightly" / "stack") in "".join(lines)
    assert processes_left(project_root) == []


def test_the_ui_shows_the_runs_of_nightly_run(project_root: Path) -> None:
    """``nightly run`` then ``nightly ui`` (``make dagster-dev``) from the same root: the
    UI's GraphQL lists the CLI's suite and history runs."""
    run = _nightly(project_root, "run", "--profile", "ci", "--tests", "06")
    assert run.returncode == 0, run.stderr[-3000:]
    port = free_port()
    child = subprocess.Popen(
        ["nightly", "ui", "--port", str(port)],
        cwd=project_root,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    query = (
        "{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } "
        "workspaceOrError { ... on Workspace { locationEntries { name } } } }"
    )
    runs = None
    locations: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and child.poll() is None:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10
                )
                data = answer.json()["data"]
                runs = data["runsOrError"]["results"]
                locations = [e["name"] for e in data["workspaceOrError"]["locationEntries"]]
                break
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                time.sleep(1)
    finally:
        _stop_group(child)
    assert runs is not None, "the UI did not answer within 180 s"
    # The project's workspace.yaml's name: `dagster schedule start -w workspace.yaml`
    # then starts the schedule the UI's daemon runs (state is kept per location name).
    workspace = yaml.safe_load((Path(__file__).parents[1] / "workspace.yaml").read_text())
    assert locations == [workspace["load_from"][0]["python_module"]["location_name"]]
    by_job = {r["jobName"]: r for r in runs}
    assert set(by_job) == {"nightly_suite", "nightly_history"}
    assert by_job["nightly_suite"]["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in by_job["nightly_suite"]["tags"]}
    assert tags["nightly/trigger"] == "cli" and tags["nightly/profile"] == "ci"
