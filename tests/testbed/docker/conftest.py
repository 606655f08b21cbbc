"""The Docker tests' daemon and image: one private dockerd for the session (root and
``dockerd`` needed: ``make system-deps`` installs docker.io), or the user's daemon when
``NIGHTLY_TEST_DOCKER_HOST`` names one; skipped with the reason otherwise. All these
tests run in one xdist group ("docker", tests/conftest.py): one project daemon at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from nightly_pipeline.testbed.docker.daemon import Daemon, find_dockerd, private_daemon
from nightly_pipeline.testbed.docker.image import Image, ensure_image
from nightly_pipeline.testbed.docker.owner import run_resources
from nightly_pipeline.testbed.docker.platform import (
    DockerPlatform,
    DockerPlatformConfig,
    docker_platform,
)
from nightly_pipeline.testbed.embedded import PlatformSettings

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def host_firewall() -> tuple[str, str]:
    """The host's iptables rules (filter and nat tables), to compare before and after."""
    rules = []
    for table in ("filter", "nat"):
        done = subprocess.run(
            ["iptables", "-t", table, "-S"], capture_output=True, text=True, check=False
        )
        rules.append(done.stdout)
    return rules[0], rules[1]


def daemon_or_skip() -> tuple[Path | None, str | None]:
    """(dockerd to start, or None) and the user's daemon address, or skip with why."""
    if url := os.environ.get("NIGHTLY_TEST_DOCKER_HOST"):
        return None, url
    dockerd = find_dockerd(os.environ.get("PATH"))
    if dockerd is None:
        pytest.skip("no dockerd: `make system-deps` (as root) installs docker.io")
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root; or set NIGHTLY_TEST_DOCKER_HOST")
    return dockerd, None


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[Daemon]:
    dockerd, url = daemon_or_skip()
    if url is not None:
        yield Daemon(url)
        return
    assert dockerd is not None
    with private_daemon(dockerd) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def docker_client(docker_daemon: Daemon) -> Iterator[docker.DockerClient]:
    client = docker_daemon.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def testbed_image(docker_client: docker.DockerClient) -> Image:
    return ensure_image(docker_client, sys.executable, PROJECT_ROOT)


@pytest.fixture(scope="module")
def platform(
    docker_client: docker.DockerClient,
    testbed_image: Image,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DockerPlatform]:
    """One Docker platform per module for the tests that only use it (the faults revert
    theirs); removed after its module, not left running beside the rest of the session."""
    run_dir = tmp_path_factory.mktemp("docker-platform")
    settings = PlatformSettings(users=20, password_hash_n=2**10)
    config = DockerPlatformConfig("t-platform", run_dir, testbed_image.tag, settings)
    with docker_platform(docker_client, config) as up:
        yield up
    assert run_resources(docker_client, "t-platform") == ([], [])
