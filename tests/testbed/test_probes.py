"""Listening ports for the stack's servers: free, and out of the way of client sockets."""

from __future__ import annotations

import socket

from nightly_pipeline.testbed.stack import probes


def test_a_free_port_is_below_the_ephemeral_range_and_can_be_listened_on() -> None:
    """Client sockets take their ports from the ephemeral range: a server's port picked
    there could be taken by a connection before the server binds it."""
    start = probes._ephemeral_start()
    ports = {probes.free_port() for _ in range(20)}
    for port in ports:
        if start:  # Linux
            assert probes.LISTEN_PORTS_FROM <= port < start
        with socket.socket() as sock:
            sock.bind((probes.HOST, port))  # free indeed
            sock.listen()
    assert len(ports) > 1  # picked at random, not one port for every caller


def test_a_port_held_by_a_listener_is_never_picked(monkeypatch) -> None:
    """The held port is drawn first, twice; the pick goes on to a port that binds. The
    draws after it are ports the kernel just handed out, not ``taken + 1``: on a busy host
    any fixed neighbour can be some client's socket (seen in CI: the draws ran out)."""
    with socket.socket() as held:
        held.bind((probes.HOST, 0))
        held.listen()
        taken = held.getsockname()[1]
        draws: list[int] = []

        def draw(start: int, stop: int) -> int:
            draws.append(_kernel_port() if len(draws) >= 2 else taken)
            return draws[-1]

        monkeypatch.setattr(probes.random, "randrange", draw)
        monkeypatch.setattr(probes, "_ephemeral_start", lambda: 60_000)
        picked = probes.free_port()
        assert draws[:2] == [taken, taken]
        assert picked != taken
        assert picked == draws[-1]


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind((probes.HOST, 0))
        return sock.getsockname()[1]


def test_without_a_range_to_pick_from_the_kernel_picks(monkeypatch) -> None:
    monkeypatch.setattr(probes, "_ephemeral_start", lambda: 0)
    port = probes.free_port()
    with socket.socket() as sock:
        sock.bind((probes.HOST, port))
