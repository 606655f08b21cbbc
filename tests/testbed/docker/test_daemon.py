"""A private dockerd: containers on a user-defined network reach each other, a port
published on 127.0.0.1 answers, and once it stops the host's firewall rules and bridge
interfaces are as they were (a default dockerd would leave DOCKER chains, a NAT
MASQUERADE rule and a FORWARD DROP policy behind)."""

from __future__ import annotations

import sys
import time
import urllib.request

from nightly_pipeline.testbed.docker.daemon import bridge_interfaces, ping, private_daemon
from nightly_pipeline.testbed.docker.image import ensure_image
from nightly_pipeline.testbed.stack.probes import free_port
from tests.testbed.docker.conftest import PROJECT_ROOT, daemon_or_skip, host_firewall

SERVE = ["/opt/python/bin/python3", "-m", "http.server", "8000", "--directory", "/etc"]


def test_private_daemon_serves_and_leaves_the_host_firewall_as_it_was() -> None:
    dockerd, _url = daemon_or_skip()
    if dockerd is None:
        return  # the user's daemon: not ours to start or to judge
    firewall, bridges = host_firewall(), bridge_interfaces()
    with private_daemon(dockerd) as daemon:
        client = daemon.client()
        image = ensure_image(client, sys.executable, PROJECT_ROOT)
        net = client.networks.create("nightly-test-daemon", driver="bridge")
        port = free_port()
        try:
            server = client.containers.run(
                image.tag,
                SERVE,
                name="srv",
                network=net.name,
                detach=True,
                ports={"8000/tcp": ("127.0.0.1", port)},
            )
            fetch = "import urllib.request; print(urllib.request.urlopen('http://srv:8000/passwd').read().decode())"
            body = _until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/passwd").read())
            assert b"nightly:x:1000" in body  # published on 127.0.0.1 through docker-proxy
            out = client.containers.run(
                image.tag, ["/opt/python/bin/python3", "-c", fetch], network=net.name, remove=True
            )
            assert b"nightly:x:1000" in out  # container to container, by name
            server.remove(force=True)
        finally:
            net.remove()
        base_url = daemon.base_url
    assert not ping(base_url)
    assert host_firewall() == firewall
    assert bridge_interfaces() == bridges


def _until(fetch, attempts: int = 100):
    for _ in range(attempts):
        try:
            return fetch()
        except OSError:
            time.sleep(0.1)
    return fetch()
