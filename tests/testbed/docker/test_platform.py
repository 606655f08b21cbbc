"""The platform in real Docker containers (issue 12, item 1): it starts from the local
image, serves Test 01 and the chaos Tests 08-11 at the ``ci`` profile, answers as the embedded one
does, and leaves no container or network behind; a killed owner's containers are
reaped at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import docker
import httpx
import pytest

from nightly_pipeline.suite.catalog import BY_ID
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.runner import run_suite_test
from nightly_pipeline.testbed.docker.daemon import Daemon
from nightly_pipeline.testbed.docker.image import Image
from nightly_pipeline.testbed.docker.owner import run_resources
from nightly_pipeline.testbed.docker.platform import (
    DockerPlatform,
    DockerPlatformConfig,
)
from nightly_pipeline.testbed.embedded import PlatformSettings
from tests.testbed.docker.conftest import PROJECT_ROOT

SETTINGS = PlatformSettings(users=20, password_hash_n=2**10)


def test_the_platform_answers_through_its_published_ports(platform: DockerPlatform) -> None:
    target = platform.target()
    ready = httpx.get(f"{target.base_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    login = httpx.post(
        f"{target.base_url}/v1/auth/login",
        json={"username": target.users[0], "password": target.password},
        timeout=5,
    )
    assert login.status_code == 200, login.text
    for name, url in target.metrics_urls.items():
        assert httpx.get(url, timeout=5).status_code == 200, name
    assert set(target.pids) == {"api", "dispatcher", "consumer"}
    assert all(pid > 1 for pid in target.pids.values())  # host pids of the containers


@pytest.mark.parametrize("test_id", ["01", "08", "09", "10", "11"])
def test_the_platform_serves_a_suite_test_at_ci(
    platform: DockerPlatform, tmp_path: Path, test_id: str
) -> None:
    """Test 01 (smoke), Test 08 (the consumer container killed with SIGKILL mid-stream
    and started again) and the other chaos tests (09-11, their faults on the Docker
    platform) pass at ``ci``: every blocking check measured and passed."""
    consumer = platform.container("consumer")
    consumer.reload()
    started_before = consumer.attrs["State"]["StartedAt"]
    outcome = run_suite_test(
        BY_ID[test_id],
        PROFILES["ci"],
        platform.target(),
        night=date(2026, 11, 30),
        run_id=f"docker-{test_id}",
        run_dir=tmp_path,
    )
    assert outcome.record.status == "passed", outcome.record.detail
    blocking = {c.check.name: c for c in outcome.checks if c.check.severity == "error"}
    assert blocking and all(c.passed for c in blocking.values()), {
        name: c.detail or c.not_measurable for name, c in blocking.items() if not c.passed
    }
    consumer.reload()
    restarted = consumer.attrs["State"]["StartedAt"] != started_before
    if test_id in ("01", "08"):
        assert restarted == (test_id == "08")  # the kill and restart hit the container


def test_a_dead_owners_containers_are_reaped_at_the_next_start(
    docker_daemon: Daemon, docker_client: docker.DockerClient, testbed_image: Image, tmp_path: Path
) -> None:
    """A child process starts a platform and is killed with SIGKILL (no teardown runs);
    the next platform's start removes its containers and network."""
    ready = tmp_path / "ready"
    child = textwrap.dedent(
        f"""
        import docker, pathlib, time
        from nightly_pipeline.testbed.docker.platform import DockerPlatform, DockerPlatformConfig
        from nightly_pipeline.testbed.embedded import PlatformSettings
        client = docker.DockerClient(base_url={docker_daemon.base_url!r})
        settings = PlatformSettings(users=2, password_hash_n=2**10)
        config = DockerPlatformConfig(
            "t-orphan", pathlib.Path({str(tmp_path)!r}), {testbed_image.tag!r}, settings
        )
        DockerPlatform(client, config).start()
        pathlib.Path({str(ready)!r}).write_text("up")
        time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env)
    try:
        for _ in range(1200):  # bounded: 120 s
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), "the child did not start its platform"
        containers, networks = run_resources(docker_client, "t-orphan")
        assert len(containers) == 7 and networks == ["nightly-t-orphan"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    config = DockerPlatformConfig("t-next", tmp_path / "next", testbed_image.tag, SETTINGS)
    platform = DockerPlatform(docker_client, config)
    try:
        platform.start()
        assert run_resources(docker_client, "t-orphan") == ([], [])
        assert sum("t-orphan" in line for line in platform.reaped) == 8
    finally:
        platform.stop()
    assert run_resources(docker_client, "t-next") == ([], [])


def test_stack_up_docker_serves_until_ctrl_c_and_removes_everything(
    docker_daemon: Daemon, docker_client: docker.DockerClient, testbed_image: Image, tmp_path: Path
) -> None:
    """``nightly stack up --docker`` on the session's daemon (``DOCKER_HOST``): the printed
    API answers; SIGINT stops it with 130 and its containers and network are gone."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "DOCKER_HOST": docker_daemon.base_url}
    env["NIGHTLY_HOME"] = str(tmp_path / "home")
    argv = [sys.executable, "-m", "nightly_pipeline.cli", "stack", "up", "--docker"]
    argv += ["--run-id", "t-cli", "--users", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded by the process: it prints once, then waits
            lines.append(line)
            if line.startswith("}"):
                break
        shown = json.loads("".join(lines))
        assert httpx.get(f"{shown['base_url']}/readyz", timeout=5).status_code == 200
        assert len(run_resources(docker_client, "t-cli")[0]) == 7
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert run_resources(docker_client, "t-cli") == ([], [])
