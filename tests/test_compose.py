"""``compose.yaml`` (the platform from official images) as Docker Compose reads it:
``docker compose config`` (the v2 plugin) or ``docker-compose config`` (Debian's 1.29),
which need no daemon. Its testbed commands are the ones this package runs, and the
``prepare`` service's arguments are ones its parser accepts."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import nightly_pipeline
from nightly_pipeline.testbed import prepare

ROOT = Path(nightly_pipeline.__file__).resolve().parents[1]
TESTBED = {"api", "dispatcher", "consumer"}


def _compose() -> list[str] | None:
    """The Compose command of this machine, or None."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.fixture(scope="module")
def compose() -> dict:
    command = _compose()
    if command is None:
        pytest.skip(
            "neither `docker compose` nor `docker-compose` is installed: "
            "apt-get install docker-compose (make system-deps)"
        )
    done = subprocess.run(
        [*command, "-f", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_compose_has_the_platform_from_official_images(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "prepare", *TESTBED}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"].split(":")[0] == "redis"
    for name in ("prepare", *TESTBED):
        assert services[name]["image"] == "nightly-pipeline:latest"
        assert Path(services[name]["build"]["context"]).resolve() == ROOT
    assert (ROOT / "Dockerfile").is_file()


def test_compose_runs_this_packages_testbed_modules(compose: dict) -> None:
    for name in ("prepare", *TESTBED):
        python, flag, module, *_ = compose["services"][name]["command"]
        assert (python, flag) == ("python", "-m")
        assert importlib.util.find_spec(module) is not None, module
        assert module.rsplit(".", 1)[-1] == name


def test_compose_prepares_the_config_the_processes_read(compose: dict) -> None:
    services = compose["services"]
    args = prepare.build_parser().parse_args(services["prepare"]["command"][3:])
    for name in TESTBED:
        command = " ".join(services[name]["command"])
        assert str(args.out) in command, name
        assert services[name]["depends_on"]["prepare"]["condition"] == (
            "service_completed_successfully"
        )
    assert args.http_host == "0.0.0.0"  # reachable through the published port


def test_compose_publishes_on_loopback_only(compose: dict) -> None:
    for name in TESTBED:
        for port in compose["services"][name]["ports"]:
            host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", (name, port)
