"""The control server's Toxiproxy HTTP API: shapes, status codes, errors, and that each
call does what Toxiproxy's does to live traffic."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chaos.helpers import ServerThread, sync_roundtrip

PROXY_KEYS = {"name", "listen", "upstream", "enabled", "toxics"}
TOXIC_KEYS = {"name", "type", "stream", "toxicity", "attributes"}


@pytest.fixture
def api(api_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, trust_env=False, timeout=30) as client:
        yield client


def _create(api: httpx.Client, server: ServerThread, name: str = "echo", **extra: Any) -> dict:
    body = {"name": name, "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{server.echo_port}"}
    response = api.post("/proxies", json={**body, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def _port(proxy: dict) -> int:
    return int(proxy["listen"].rsplit(":", 1)[1])


def _error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": message, "status": status}


def test_version_and_empty_index(api: httpx.Client) -> None:
    response = api.get("/version")
    assert response.status_code == 200
    assert response.json()["version"].startswith("2.")
    assert api.get("/proxies").json() == {}


def test_create_show_index_and_delete_a_proxy(api: httpx.Client, api_server: ServerThread) -> None:
    proxy = _create(api, api_server)
    assert set(proxy) == PROXY_KEYS
    assert proxy["name"] == "echo" and proxy["enabled"] is True and proxy["toxics"] == []
    assert proxy["upstream"] == f"127.0.0.1:{api_server.echo_port}"
    assert _port(proxy) > 0  # port 0 became the port listened on
    assert sync_roundtrip(_port(proxy))[0] == b"ping"
    assert api.get("/proxies/echo").json() == proxy
    assert api.get("/proxies").json() == {"echo": proxy}
    _error(
        api.post("/proxies", json={"name": "echo", "upstream": "127.0.0.1:1"}),
        409,
        "proxy already exists",
    )
    response = api.delete("/proxies/echo")
    assert response.status_code == 204 and response.content == b""
    with pytest.raises(ConnectionRefusedError):
        sync_roundtrip(_port(proxy))
    _error(api.get("/proxies/echo"), 404, "proxy not found")
    _error(api.delete("/proxies/echo"), 404, "proxy not found")


def test_create_defaults_and_disabled(api: httpx.Client, api_server: ServerThread) -> None:
    upstream = f"localhost:{api_server.echo_port}"
    created = api.post("/proxies", json={"name": "d", "upstream": upstream, "enabled": False})
    assert created.status_code == 201
    proxy = created.json()
    assert proxy["enabled"] is False and proxy["listen"].startswith("127.0.0.1:")
    assert proxy["upstream"] == f"127.0.0.1:{api_server.echo_port}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"upstream": "127.0.0.1:1"}, "missing required field: name"),
        ({"name": "x"}, "missing required field: upstream"),
        (
            {"name": "x", "upstream": "127.0.0.1:1", "listen": "0.0.0.0:0"},
            "bad request body: listen: 0.0.0.0 is not a loopback address in '0.0.0.0:0'",
        ),
        (
            {"name": "x", "upstream": "10.1.2.3:5432"},
            "bad request body: upstream: 10.1.2.3 is not a loopback address in '10.1.2.3:5432'",
        ),
        (
            {"name": "x", "upstream": "db.example.com:5432"},
            "bad request body: upstream: db.example.com is not a loopback address in"
            " 'db.example.com:5432'",
        ),
        (
            {"name": "x", "upstream": "127.0.0.1"},
            "bad request body: upstream: expected HOST:PORT, got '127.0.0.1'",
        ),
        ({"name": 5, "upstream": "127.0.0.1:1"}, "bad request body: name must be a str, got 5"),
    ],
)
def test_create_refuses_bad_input(api: httpx.Client, body: dict, message: str) -> None:
    _error(api.post("/proxies", json=body), 400, message)
    assert api.get("/proxies").json() == {}


def test_bad_json_unknown_routes_methods_and_browsers(api: httpx.Client) -> None:
    response = api.post("/proxies", content=b"{nope")
    assert response.status_code == 400
    assert response.json()["error"].startswith("bad request body: ")
    _error(api.get("/nowhere"), 404, "not found")
    _error(api.put("/proxies"), 405, "method PUT not allowed")
    _error(
        api.get("/proxies", headers={"User-Agent": "Mozilla/5.0"}), 403, "User agent not allowed"
    )


def test_disable_and_enable_keep_the_port(api: httpx.Client, api_server: ServerThread) -> None:
    port = _port(_create(api, api_server))
    disabled = api.post("/proxies/echo", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    with pytest.raises(ConnectionRefusedError):
        sync_roundtrip(port)
    enabled = api.patch("/proxies/echo", json={"enabled": True})
    assert enabled.json()["enabled"] is True and _port(enabled.json()) == port
    assert sync_roundtrip(port)[0] == b"ping"


def test_update_listen_and_upstream(api: httpx.Client, api_server: ServerThread) -> None:
    old = _port(_create(api, api_server))
    moved = api.post("/proxies/echo", json={"listen": "127.0.0.1:0"}).json()
    assert _port(moved) != old
    assert sync_roundtrip(_port(moved))[0] == b"ping"
    _error(
        api.post("/proxies/echo", json={"upstream": "192.0.2.1:80"}),
        400,
        "bad request body: upstream: 192.0.2.1 is not a loopback address in '192.0.2.1:80'",
    )


def test_listen_on_a_taken_port_is_a_500(api: httpx.Client, api_server: ServerThread) -> None:
    taken = _port(_create(api, api_server, "first"))
    response = api.post(
        "/proxies",
        json={"name": "second", "listen": f"127.0.0.1:{taken}", "upstream": "127.0.0.1:1"},
    )
    assert response.status_code == 500
    assert response.json()["error"].startswith(f"listen tcp 127.0.0.1:{taken}: ")


def test_toxic_lifecycle(api: httpx.Client, api_server: ServerThread) -> None:
    port = _port(_create(api, api_server))
    created = api.post(
        "/proxies/echo/toxics", json={"type": "latency", "attributes": {"latency": 150}}
    )
    assert created.status_code == 200
    toxic = created.json()
    assert toxic == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 150, "jitter": 0},
    }
    assert sync_roundtrip(port)[1] >= 0.14
    assert api.get("/proxies/echo/toxics").json() == [toxic]
    assert api.get("/proxies/echo/toxics/latency_downstream").json() == toxic
    assert api.get("/proxies/echo").json()["toxics"] == [toxic]
    updated = api.post(
        "/proxies/echo/toxics/latency_downstream", json={"attributes": {"jitter": 10}}
    )
    assert updated.json()["attributes"] == {"latency": 150, "jitter": 10}
    patched = api.patch("/proxies/echo/toxics/latency_downstream", json={"toxicity": 0.5})
    assert patched.json()["toxicity"] == 0.5 and patched.json()["attributes"]["jitter"] == 10
    response = api.delete("/proxies/echo/toxics/latency_downstream")
    assert response.status_code == 204 and response.content == b""
    assert api.get("/proxies/echo/toxics").json() == []
    _error(api.delete("/proxies/echo/toxics/latency_downstream"), 404, "toxic not found")
    _error(api.get("/proxies/echo/toxics/latency_downstream"), 404, "toxic not found")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"type": "nope"}, 400, "invalid toxic type"),
        ({}, 400, "invalid toxic type"),
        (
            {"type": "latency", "stream": "sideways"},
            400,
            "stream was invalid, can be either upstream or downstream",
        ),
        (
            {"type": "latency", "attributes": {"latency": -5}},
            400,
            "bad request body: toxic 'latency': latency must be >= 0, got -5",
        ),
        (
            {"type": "bandwidth", "attributes": {"rate": 0}},
            400,
            "bad request body: toxic 'bandwidth': rate must be >= 1 KB/s",
        ),
        (
            {"type": "noop", "toxicity": 2},
            400,
            "bad request body: toxicity must be within [0, 1], got 2",
        ),
        (
            {"type": "noop", "attributes": [1]},
            400,
            "bad request body: attributes must be a JSON object",
        ),
    ],
)
def test_toxic_create_refuses_bad_input(
    api: httpx.Client, api_server: ServerThread, body: dict, status: int, message: str
) -> None:
    _create(api, api_server)
    _error(api.post("/proxies/echo/toxics", json=body), status, message)
    assert api.get("/proxies/echo/toxics").json() == []


def test_toxic_names_streams_and_conflicts(api: httpx.Client, api_server: ServerThread) -> None:
    _create(api, api_server)
    up = api.post(
        "/proxies/echo/toxics", json={"type": "timeout", "stream": "upstream", "attributes": None}
    )
    assert up.json()["name"] == "timeout_upstream" and up.json()["attributes"] == {"timeout": 0}
    named = api.post("/proxies/echo/toxics", json={"name": "t", "type": "timeout", "toxicity": 0})
    assert named.json()["stream"] == "downstream" and named.json()["toxicity"] == 0
    _error(
        api.post("/proxies/echo/toxics", json={"name": "t", "type": "noop"}),
        409,
        "toxic already exists",
    )
    _error(api.post("/proxies/nope/toxics", json={"type": "noop"}), 404, "proxy not found")
    _error(api.get("/proxies/nope/toxics"), 404, "proxy not found")


def test_reset_enables_every_proxy_and_removes_every_toxic(
    api: httpx.Client, api_server: ServerThread
) -> None:
    port = _port(_create(api, api_server, "a"))
    _create(api, api_server, "b", enabled=False)
    api.post("/proxies/a/toxics", json={"type": "timeout"})
    api.post("/proxies/b/toxics", json={"type": "latency", "stream": "upstream"})
    response = api.post("/reset")
    assert response.status_code == 204
    proxies = api.get("/proxies").json()
    assert all(p["enabled"] and p["toxics"] == [] for p in proxies.values())
    assert sync_roundtrip(port)[0] == b"ping"


def test_populate_creates_keeps_and_replaces(api: httpx.Client, api_server: ServerThread) -> None:
    up = f"127.0.0.1:{api_server.echo_port}"
    response = api.post(
        "/populate",
        json=[{"name": "p1", "upstream": up}, {"name": "p2", "upstream": up, "enabled": False}],
    )
    assert response.status_code == 201
    first = response.json()["proxies"]
    assert [p["name"] for p in first] == ["p1", "p2"] and first[1]["enabled"] is False
    again = api.post(
        "/populate", json=[{"name": "p1", "listen": first[0]["listen"], "upstream": up}]
    )
    assert again.json()["proxies"] == [first[0]]  # identical: kept as is
    replaced = api.post("/populate", json=[{"name": "p1", "upstream": "127.0.0.1:1"}])
    assert replaced.json()["proxies"][0]["upstream"] == "127.0.0.1:1"
    _error(
        api.post("/populate", json=[{"name": "p3", "upstream": up}, {"upstream": up}]),
        400,
        "missing required field: name at proxy 2",
    )
    assert "p3" not in api.get("/proxies").json()  # nothing created when one is wrong
    _error(
        api.post("/populate", json={"name": "p1"}),
        400,
        "bad request body: expected a JSON array of proxies",
    )


def test_stats_extension_counts_links_and_bytes(
    api: httpx.Client, api_server: ServerThread
) -> None:
    port = _port(_create(api, api_server))
    sync_roundtrip(port, b"12345")
    stats = api.get("/proxies/echo/stats").json()
    assert set(stats) >= PROXY_KEYS
    assert stats["cut"] is False and stats["links_total"] == 1
    assert stats["bytes_upstream"] == 5
