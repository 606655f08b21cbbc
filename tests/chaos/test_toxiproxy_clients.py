"""Real Toxiproxy clients against our control server: ``toxiproxy-python`` (module
``toxiproxy``) and ``chaostoolkit-toxiproxy`` (module ``chaostoxi``), whose actions and
probes are called as Chaos Toolkit calls them (with a ``configuration``), and run inside a
``chaostoolkit-lib`` experiment."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from nightly_pipeline.chaos import ProxyControl
from tests.chaos.helpers import GUARD_S, ServerThread, sync_roundtrip

toxiproxy = pytest.importorskip("toxiproxy")
chaostoxi_proxy = pytest.importorskip("chaostoxi.proxy.actions")
chaostoxi_probes = pytest.importorskip("chaostoxi.proxy.probes")
chaostoxi_toxic = pytest.importorskip("chaostoxi.toxic.actions")
chaoslib_experiment = pytest.importorskip("chaoslib.experiment")


@pytest.fixture
def server(api_server: ServerThread) -> Iterator[Any]:
    """toxiproxy-python's server object, pointed at ours (its address is class state)."""
    from toxiproxy.api import APIConsumer

    saved = APIConsumer.host, APIConsumer.port
    client = toxiproxy.Toxiproxy()
    client.update_api_consumer("127.0.0.1", api_server.port)
    try:
        yield client
    finally:
        APIConsumer.host, APIConsumer.port = saved


def _port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


# ---------------------------------------------------------------- toxiproxy-python


def test_toxiproxy_python_proxies(server: Any, api_server: ServerThread) -> None:
    from toxiproxy.exceptions import NotFound, ProxyExists

    assert server.running() is True
    assert b'"version"' in server.version()
    upstream = f"127.0.0.1:{api_server.echo_port}"
    proxy = server.create(upstream=upstream, name="echo", listen="127.0.0.1:0")
    port = _port(proxy.listen)
    assert proxy.enabled is True and port > 0
    assert sync_roundtrip(port)[0] == b"ping"
    assert set(server.proxies()) == {"echo"}
    assert server.get_proxy("echo").upstream == upstream
    with pytest.raises(ProxyExists):
        server.create(upstream=upstream, name="echo")

    with proxy.down():
        with pytest.raises(ConnectionRefusedError):
            sync_roundtrip(port)
        assert server.get_proxy("echo").enabled is False
    assert sync_roundtrip(port)[0] == b"ping"

    created = server.populate([{"name": "other", "upstream": upstream, "listen": "127.0.0.1:0"}])
    assert [p.name for p in created] == ["other"]
    assert server.destroy(server.get_proxy("other")) is True
    assert server.get_proxy("other") is None
    with pytest.raises(NotFound):
        proxy.destroy_toxic("absent")
    server.destroy_all()
    assert server.proxies() == {}


def test_toxiproxy_python_toxics(server: Any, api_server: ServerThread) -> None:
    from toxiproxy.exceptions import InvalidToxic

    proxy = server.create(
        upstream=f"127.0.0.1:{api_server.echo_port}", name="echo", listen="127.0.0.1:0"
    )
    port = _port(proxy.listen)
    proxy.add_toxic(type="latency", attributes={"latency": 200})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream"}
    toxic = toxics["latency_downstream"]
    assert (toxic.type, toxic.stream, toxic.toxicity) == ("latency", "downstream", 1.0)
    assert toxic.attributes == {"latency": 200, "jitter": 0}
    assert sync_roundtrip(port)[1] >= 0.19
    proxy.add_toxic(name="cap", type="limit_data", stream="downstream", attributes={"bytes": 3})
    assert proxy.get_toxic("cap").attributes == {"bytes": 3}
    assert sync_roundtrip(port, b"abcdef")[0] == b"abc"
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="no_such_toxic")
    assert proxy.destroy_toxic("cap") is True
    assert server.reset() is True
    assert proxy.toxics() == {}
    assert sync_roundtrip(port, b"abcdef")[0] == b"abcdef"


# ---------------------------------------------------------------- chaostoolkit-toxiproxy


@pytest.fixture
def configuration(api_server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # create_proxy/modify_proxy also export {name}_PORT to os.environ: undo that after.
    for name in ("echo_PORT", "db_PORT"):
        monkeypatch.delenv(name, raising=False)
    return {"toxiproxy_url": api_server.url}


def test_chaostoolkit_proxy_actions_and_probes(
    configuration: dict, api_server: ServerThread
) -> None:
    created = chaostoxi_proxy.create_proxy(
        proxy_name="echo",
        upstream_host="127.0.0.1",
        upstream_port=api_server.echo_port,
        listen_host="127.0.0.1",
        configuration=configuration,
    )
    assert created is True
    port = int(configuration["echo_PORT"])
    assert sync_roundtrip(port)[0] == b"ping"
    assert chaostoxi_probes.proxy_exist("echo", configuration=configuration) is True
    assert chaostoxi_probes.proxy_exist("nope", configuration=configuration) is False
    assert (
        chaostoxi_probes.get_proxy_attribute("echo", "enabled", configuration=configuration) is True
    )

    assert chaostoxi_proxy.disable_proxy("echo", configuration=configuration) is True
    with pytest.raises(ConnectionRefusedError):
        sync_roundtrip(port)
    assert chaostoxi_proxy.enable_proxy("echo", configuration=configuration) is True
    assert int(configuration["echo_PORT"]) == port
    assert sync_roundtrip(port)[0] == b"ping"

    with pytest.raises(AssertionError):  # refused: not loopback (their default listen host)
        chaostoxi_proxy.create_proxy(
            proxy_name="db", upstream_host="127.0.0.1", upstream_port=1, configuration=configuration
        )
    assert chaostoxi_proxy.modify_proxy(
        "echo", listen_address="127.0.0.1:0", configuration=configuration
    )
    assert int(configuration["echo_PORT"]) != port
    assert chaostoxi_proxy.reset(configuration=configuration) is True
    chaostoxi_proxy.delete_proxy("echo", configuration=configuration)
    assert chaostoxi_probes.proxy_exist("echo", configuration=configuration) is False


def test_chaostoolkit_toxic_actions(configuration: dict, api_server: ServerThread) -> None:
    chaostoxi_proxy.create_proxy(
        proxy_name="echo",
        upstream_host="127.0.0.1",
        upstream_port=api_server.echo_port,
        listen_host="127.0.0.1",
        configuration=configuration,
    )
    port = int(configuration["echo_PORT"])
    cfg = {"configuration": configuration}
    assert chaostoxi_toxic.create_latency_toxic("echo", "slow", latency=200, jitter=0, **cfg)
    assert sync_roundtrip(port)[1] >= 0.19
    assert chaostoxi_toxic.delete_toxic("echo", "slow", **cfg) is True
    assert chaostoxi_toxic.create_bandwith_degradation_toxic("echo", "bw", rate=50, **cfg)
    assert chaostoxi_toxic.create_slow_connection_close_toxic("echo", "sc", delay=10, **cfg)
    assert chaostoxi_toxic.create_slicer_toxic(
        "echo", "sl", average_size=2, size_variation=1, delay=10, **cfg
    )
    assert sync_roundtrip(port, b"through all three")[0] == b"through all three"
    for name in ("bw", "sc", "sl"):
        assert chaostoxi_toxic.delete_toxic("echo", name, **cfg) is True
    assert chaostoxi_toxic.create_limiter_toxic("echo", "lim", bytes_limit=2, **cfg)
    assert sync_roundtrip(port, b"abcd")[0] == b"ab"
    assert chaostoxi_toxic.delete_toxic("echo", "lim", **cfg) is True

    # timeout 0 holds the reply; deleting the toxic delivers it
    assert chaostoxi_toxic.create_timeout_toxic("echo", "hold", timeout=0, **cfg)
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD_S) as sock:
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(4)
        assert chaostoxi_toxic.delete_toxic("echo", "hold", **cfg) is True
        sock.settimeout(GUARD_S)
        assert sock.recv(4) == b"held"

    assert chaostoxi_toxic.create_toxic(
        "echo",
        "reset",
        "reset_peer",
        stream="upstream",
        toxicity=1.0,
        attributes={"timeout": 0},
        **cfg,
    )
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD_S) as sock:
        sock.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    assert chaostoxi_toxic.delete_toxic("echo", "absent", **cfg) is False


def roundtrip_through(port: int, configuration: dict | None = None) -> float:
    """A probe for the experiment below: one echo round trip's seconds."""
    data, seconds = sync_roundtrip(int(port))
    assert data == b"ping"
    return seconds


def test_a_chaostoolkit_experiment_drives_the_proxy(
    configuration: dict, api_server: ServerThread
) -> None:
    with ProxyControl(api_server.url) as control:
        created = control.create_proxy("echo", f"127.0.0.1:{api_server.echo_port}")
        port = _port(created["listen"])
        assert control.name == "echo" and control.proxy() == created
    probe = {
        "type": "probe",
        "name": "round-trip",
        "tolerance": True,
        "provider": {
            "type": "python",
            "module": "chaostoxi.proxy.probes",
            "func": "proxy_exist",
            "arguments": {"proxy_name": "echo"},
        },
    }
    experiment = {
        "title": "latency on the echo link",
        "description": "our proxy driven by chaostoolkit-toxiproxy",
        "configuration": configuration,
        "steady-state-hypothesis": {"title": "the proxy is there", "probes": [probe]},
        "method": [
            {
                "type": "action",
                "name": "add-latency",
                "provider": {
                    "type": "python",
                    "module": "chaostoxi.toxic.actions",
                    "func": "create_latency_toxic",
                    "arguments": {"for_proxy": "echo", "toxic_name": "slow", "latency": 200},
                },
            },
            {
                "type": "probe",
                "name": "measure",
                "provider": {
                    "type": "python",
                    "module": __name__,
                    "func": "roundtrip_through",
                    "arguments": {"port": port},
                },
            },
        ],
        "rollbacks": [
            {
                "type": "action",
                "name": "remove-latency",
                "provider": {
                    "type": "python",
                    "module": "chaostoxi.toxic.actions",
                    "func": "delete_toxic",
                    "arguments": {"for_proxy": "echo", "toxic_name": "slow"},
                },
            }
        ],
    }
    journal = chaoslib_experiment.run_experiment(
        experiment, settings={"runtime": {"rollbacks": {"strategy": "always"}}}
    )
    assert journal["status"] == "completed", journal
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    assert journal["run"][1]["output"] >= 0.19  # the probe saw the latency
    assert [r["status"] for r in journal["rollbacks"]] == ["succeeded"]
    with ProxyControl(api_server.url) as control:
        assert control.toxics() == []
