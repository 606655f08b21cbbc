"""The ``partition`` fault on real kernel parts: iptables rules on loopback and inside a
real network namespace reached over a veth pair, real TCP servers, a run SIGKILLed with
its rules in place. (Needs root, as iptables does; CI runs as root.)"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightly_pipeline.chaos import iptables
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.chaos.platform_faults import FaultError
from nightly_pipeline.chaos.session import open_session
from tests.chaos.helpers import GUARD_S, ProxyBackend

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="iptables rules need root")

NO_REPLY_S = 2.0  # a dropped SYN is never answered; a live loopback peer answers in µs


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.request.recv(65536):
                self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _round_trip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return sock.recv(65536)


def _connect(host: str, port: int, timeout: float = GUARD_S) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def _session(tmp_path: Path):
    return open_session(ProxyBackend("http://127.0.0.1:9"), FaultLedger(tmp_path / "a.json"), "r")


def test_drop_holds_packets_until_reverted_and_loses_none(echo_port, tmp_path) -> None:
    """DROP: a new connection gets no answer at all (a timeout, not a refusal); data sent
    on an open one during the partition arrives after the revert (TCP retransmits)."""
    held = _connect("127.0.0.1", echo_port)
    with _session(tmp_path) as session:
        session.inject("cut", "partition", {"port": echo_port, "mode": "drop"})
        assert len(iptables.tagged()) == 2
        with pytest.raises(TimeoutError):
            _connect("127.0.0.1", echo_port, timeout=NO_REPLY_S)
        held.sendall(b"sent during the partition")
        session.revert("cut")
    assert iptables.tagged() == []
    assert held.recv(65536) == b"sent during the partition"
    with _connect("127.0.0.1", echo_port) as fresh:
        assert _round_trip(fresh) == b"ping"
    held.close()


def test_reject_refuses_new_connections_and_resets_open_ones(echo_port, tmp_path) -> None:
    held = _connect("127.0.0.1", echo_port)
    assert _round_trip(held) == b"ping"
    with _session(tmp_path) as session:
        session.inject("cut", "partition", {"port": echo_port, "mode": "reject"})
        with pytest.raises(ConnectionRefusedError):
            _connect("127.0.0.1", echo_port)
        with pytest.raises(ConnectionResetError):
            _round_trip(held)
    assert iptables.tagged() == []
    with _connect("127.0.0.1", echo_port) as fresh:
        assert _round_trip(fresh) == b"ping"


def test_a_proxys_port_is_cut_in_the_kernel_while_the_proxy_stays_enabled(proxy, tmp_path) -> None:
    """``proxy`` names a link: its listening port is partitioned, the proxy untouched."""
    from nightly_pipeline.chaos.control import ProxyControl

    with ProxyControl(proxy, proxy="redis") as control:
        port = int(control.proxy()["listen"].rsplit(":", 1)[1])
    ledger = FaultLedger(tmp_path / "a.json")
    with open_session(ProxyBackend(proxy), ledger, "r") as session:
        session.inject("cut", "partition", {"proxy": "redis", "mode": "reject"})
        with pytest.raises(ConnectionRefusedError):
            _connect("127.0.0.1", port)
        with ProxyControl(proxy, proxy="redis") as control:
            assert control.proxy()["enabled"] is True
        (entry,) = ledger.active().values()
        assert len(entry["leftover"]["rules"]) == 2
    assert iptables.tagged() == [] and ledger.active() == {}


@pytest.fixture
def namespace() -> Iterator[tuple[str, str]]:
    """A network namespace with an echo server inside, reached over a veth pair; its name
    and the server's address. Removed afterwards (the server dies with it)."""
    name = f"np-{uuid.uuid4().hex[:8]}"
    host_if, ns_if = f"{name}-h", f"{name}-n"
    subnet = 10 + os.getpid() % 200
    host_ip, ns_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    ip("netns", "add", name)
    server = None
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", name)
        ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", name, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        ip("netns", "exec", name, "ip", "link", "set", ns_if, "up")
        code = textwrap.dedent(
            f"""
            import socketserver, sys
            sys.path.insert(0, {str(Path(__file__).parents[2])!r})
            from tests.chaos.test_partition import _Echo
            server = socketserver.ThreadingTCPServer(({ns_ip!r}, 7007), _Echo)
            print("ready", flush=True)
            server.serve_forever()
            """
        )
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield name, ns_ip
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=30)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)
        ip("netns", "del", name)


def test_a_partition_inside_a_network_namespace(namespace, tmp_path) -> None:
    """The rules go into the service's namespace; the host's own rules stay untouched."""
    name, address = namespace
    with _connect(address, 7007) as before:
        assert _round_trip(before) == b"ping"
    host_rules = iptables.run(["-S"])
    with _session(tmp_path) as session:
        session.inject("cut", "partition", {"port": 7007, "mode": "reject", "netns": name})
        assert len(iptables.tagged(name)) == 2 and iptables.run(["-S"]) == host_rules
        with pytest.raises(ConnectionRefusedError):
            _connect(address, 7007)
    assert iptables.tagged(name) == []
    with _connect(address, 7007) as after:
        assert _round_trip(after) == b"ping"


KILLED_RUN = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.chaos.session import open_session
from tests.chaos.helpers import ProxyBackend

backend = ProxyBackend("http://127.0.0.1:9")
with open_session(backend, FaultLedger(Path({ledger!r})), "run-killed") as session:
    session.inject("cut", "partition", {{"port": {port}, "mode": "reject"}})
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_runs_partition_is_deleted_at_the_next_start(echo_port, tmp_path) -> None:
    ledger_path = tmp_path / "active.json"
    script = KILLED_RUN.format(
        tests=str(Path(__file__).parents[2]), ledger=str(ledger_path), port=echo_port
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert len(iptables.tagged()) == 2
    with pytest.raises(ConnectionRefusedError):
        _connect("127.0.0.1", echo_port)

    (line,) = FaultLedger(ledger_path).revert_leftovers()

    assert "2 iptables rule(s)" in line and "run-killed" in line
    assert iptables.tagged() == []
    with _connect("127.0.0.1", echo_port) as fresh:
        assert _round_trip(fresh) == b"ping"


def test_without_iptables_the_fault_names_the_fix_and_injects_nothing(
    echo_port, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without iptables
    ledger = FaultLedger(tmp_path / "a.json")
    with (
        open_session(ProxyBackend("http://127.0.0.1:9"), ledger, "r") as session,
        pytest.raises(FaultError, match="apt-get install iptables"),
    ):
        session.inject("cut", "partition", {"port": echo_port})
    assert ledger.active() == {}
    monkeypatch.undo()
    assert iptables.tagged() == []
