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
    with socket.socket() as held:
        held.bind((probes.HOST, 0))
        held.listen()
        taken = held.getsockname()[1]
        picks = iter([taken, taken, taken + 1])  # the held port drawn first, twice
        monkeypatch.setattr(probes.random, "randrange", lambda a, b: next(picks))
        monkeypatch.setattr(probes, "_ephemeral_start", lambda: 60_000)
        assert probes.free_port() == taken + 1


def test_without_a_range_to_pick_from_the_kernel_picks(monkeypatch) -> None:
    monkeypatch.setattr(probes, "_ephemeral_start", lambda: 0)
    port = probes.free_port()
    with socket.socket() as sock:
        sock.bind((probes.HOST, port))
