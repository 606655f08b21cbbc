"""The Docker fault backend (issue 12, item 2): each fault injects and reverts on the
running Docker platform — the embedded platform's names (kill, terminate, pause,
restart, link_down through the proxy containers) and the containers' own (disconnect,
limits, bandwidth)."""

from __future__ import annotations

import time

import httpx
import pytest

from nightly_pipeline.chaos.platform_faults import build
from nightly_pipeline.testbed.docker.platform import DockerPlatform


def _ready(platform: DockerPlatform) -> int:
    try:
        return httpx.get(f"{platform.base_url}/readyz", timeout=2).status_code
    except httpx.HTTPError:
        return 0  # nothing answered


def _until(condition, attempts: int = 300) -> bool:
    for _ in range(attempts):  # bounded: 30 s
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("fault", ["kill", "terminate"])
def test_a_signal_fault_stops_the_container_and_revert_starts_it(
    platform: DockerPlatform, fault: str
) -> None:
    before = platform.pids()["consumer"]
    injected = build(fault, platform, {"process": "consumer"})
    injected.inject()
    try:
        assert _until(lambda: not platform.is_running("consumer"))
    finally:
        injected.revert()
    assert platform.is_running("consumer")
    assert platform.pids()["consumer"] != before


def test_pause_freezes_the_api_and_revert_thaws_it(platform: DockerPlatform) -> None:
    fault = build("pause", platform, {"process": "api"})
    fault.inject()
    try:
        platform.container("api").reload()
        assert platform.container("api").status == "paused"
        assert _ready(platform) == 0  # frozen: no answer within the timeout
    finally:
        fault.revert()
    assert _until(lambda: _ready(platform) == 200)


def test_restart_brings_postgres_back_with_its_data(platform: DockerPlatform) -> None:
    fault = build("restart", platform, {"process": "postgres"})
    fault.inject()
    fault.revert()
    assert _until(lambda: _ready(platform) == 200)
    login = httpx.post(
        f"{platform.base_url}/v1/auth/login",
        json={
            "username": next(iter(platform.users)),
            "password": platform.config.settings.password,
        },
        timeout=5,
    )
    assert login.status_code == 200, login.text  # the seeded users survived the restart


def test_link_down_through_the_proxy_container_degrades_and_heals(
    platform: DockerPlatform,
) -> None:
    fault = build("link_down", platform, {"proxy": "postgres"})
    fault.inject()
    try:
        assert _until(lambda: _ready(platform) == 503)
    finally:
        fault.revert()
    assert _until(lambda: _ready(platform) == 200)


def test_disconnect_cuts_the_api_off_and_connect_heals(platform: DockerPlatform) -> None:
    fault = build("disconnect", platform, {"process": "redis"})
    fault.inject()
    try:
        platform.container("redis").reload()
        networks = platform.container("redis").attrs["NetworkSettings"]["Networks"]
        assert platform.network_name not in networks
        assert _until(lambda: _ready(platform) == 503)
    finally:
        fault.revert()
    assert _until(lambda: _ready(platform) == 200)


def test_limits_squeeze_a_container_and_revert_restores_them(platform: DockerPlatform) -> None:
    before = platform.limits("dispatcher")
    fault = build("limits", platform, {"process": "dispatcher", "cpus": 0.5, "memory_mb": 256})
    fault.inject()
    try:
        assert platform.limits("dispatcher") == (0.5, 256 * 1024 * 1024)
    finally:
        fault.revert()
    cpus, memory = platform.limits("dispatcher")
    assert cpus == before[0]
    assert memory == (before[1] or memory)  # an unlimited one gets the host's memory
    assert platform.is_running("dispatcher")


def test_bandwidth_installs_a_token_bucket_and_revert_removes_it(
    platform: DockerPlatform,
) -> None:
    fault = build("bandwidth", platform, {"process": "api", "rate_kbit": 512})
    fault.inject()
    try:
        code, shown = platform.exec_root("api", ["tc", "qdisc", "show", "dev", "eth0"])
        assert code == 0 and "tbf" in shown and "512Kbit" in shown, shown
    finally:
        fault.revert()
    _, shown = platform.exec_root("api", ["tc", "qdisc", "show", "dev", "eth0"])
    assert "tbf" not in shown
    assert _ready(platform) == 200


def test_a_container_fault_on_the_embedded_platform_names_the_fix() -> None:
    """A backend without container handles (``NoHandles``, as a deployed platform):
    the fault refuses with the fix, injecting nothing."""
    from nightly_pipeline.chaos.backend import NoHandles
    from nightly_pipeline.chaos.platform_faults import FaultError

    backend = NoHandles()
    fault = build("disconnect", backend, {"process": "api"})
    with pytest.raises(FaultError, match=r"needs the Docker platform \(`--target docker`\)"):
        fault.inject()
