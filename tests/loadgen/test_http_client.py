"""HttpClient against the real HTTP server of servers.py (a separate process)."""

import asyncio
import hashlib
import os

import pytest
import uvloop

from nightly_pipeline.loadgen.errors import ConfigError, TargetNotAllowedError
from nightly_pipeline.loadgen.http_client import HttpClient, HttpResponse
from tests.loadgen.servers import closed_port, get_json, http_server, paused


def run(coro):
    return uvloop.run(coro)


@pytest.fixture(scope="module")
def server():
    with http_server() as srv:
        yield srv


@pytest.fixture
def own_server():
    """A server for one test (connection counts, SIGSTOP)."""
    with http_server() as srv:
        yield srv


async def fetch(url: str, method: str, path: str, **kwargs) -> HttpResponse:
    async with HttpClient(url, timeout=5) as client:
        return await client.request(method, path, **kwargs)


def test_get_small_body(server):
    r = run(fetch(server.url, "GET", "/"))
    assert (r.status, r.body, r.error) == (200, b"ok", None)
    assert r.header("content-length") == b"2"
    assert r.header(b"Content-Length") == b"2"
    assert 0 < r.sent_at <= r.finished_at


def test_keep_alive_reuses_one_connection_for_sequential_requests(own_server):
    before = get_json(own_server.url, "/stats")["connections"]

    async def go():
        async with HttpClient(own_server.url) as client:
            rs = [await client.request("GET", "/") for _ in range(50)]
            return rs, client.connections_opened

    rs, opened = run(go())
    after = get_json(own_server.url, "/stats")
    assert all(r.status == 200 for r in rs)
    assert opened == 1
    assert after["connections"] - before == 2  # ours + this /stats call
    assert after["requests"] >= 51


def test_pool_is_bounded_and_reused_under_concurrency(server):
    async def go():
        async with HttpClient(server.url, max_connections=4) as client:
            rs = await asyncio.gather(*(client.request("GET", "/delay?ms=5") for _ in range(100)))
            return rs, client.connections_opened, client.open_connections

    rs, opened, open_now = run(go())
    assert [r.status for r in rs] == [200] * 100
    assert opened <= 4
    assert open_now <= 4


async def _checked_out(client: HttpClient, deadline_s: float = 30) -> None:
    """Wait (bounded) until a request holds the client's one connection: opened, not idle.
    A positive signal instead of a sleep that a busy machine could outrun."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while not (client.open_connections == 1 and client.idle_connections == 0):
        assert loop.time() < give_up, "no request took the connection"
        await asyncio.sleep(0.005)


def test_waiting_for_a_connection_is_bounded(server):
    async def go():
        async with HttpClient(server.url, max_connections=1, pool_timeout=0.05) as client:
            slow = asyncio.ensure_future(client.request("GET", "/delay?ms=500"))
            await _checked_out(client)  # the slow request holds the only connection
            waiting = await client.request("GET", "/")
            return await slow, waiting

    slow, waiting = run(go())
    assert slow.status == 200
    assert (waiting.status, waiting.error) == (0, "pool_timeout")


def test_chunked_body(server):
    r = run(fetch(server.url, "GET", "/chunked?n=50&size=1000"))
    assert r.status == 200
    assert r.header("transfer-encoding") == b"chunked"
    assert r.body == b"c" * 50_000


def test_content_length_body_of_one_mebibyte(server):
    r = run(fetch(server.url, "GET", "/bytes?n=1048576"))
    assert r.status == 200
    assert r.body == b"x" * 1_048_576


def test_body_delimited_by_connection_close(server):
    r = run(fetch(server.url, "GET", "/eof"))
    assert (r.status, r.body, r.error) == (200, b"until-eof", None)


@pytest.mark.parametrize("size", [0, 1, 16_384, 16_385, 2_000_000])
def test_post_body_is_echoed_intact(server, size):
    payload = os.urandom(size)
    r = run(fetch(server.url, "POST", "/echo", body=payload))
    assert r.status == 200
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_json_helper(server):
    r = run(fetch(server.url, "POST", "/echo", json={"a": [1, 2], "b": "é"}))
    assert r.json() == {"a": [1, 2], "b": "é"}


@pytest.mark.parametrize("code", [201, 204, 404, 500, 503])
def test_status_codes_are_responses_not_errors(server, code):
    r = run(fetch(server.url, "GET", f"/status/{code}"))
    assert (r.status, r.error) == (code, None)
    if code == 204:
        assert r.body == b""


def test_head_then_get_on_the_same_client(server):
    async def go():
        async with HttpClient(server.url) as client:
            return await client.request("HEAD", "/"), await client.request("GET", "/")

    head, get = run(go())
    assert (head.status, head.body, head.header("content-length")) == (200, b"", b"2")
    assert (get.status, get.body) == (200, b"ok")


def test_timeout_returns_an_error_response(server):
    async def go():
        async with HttpClient(server.url, timeout=0.2) as client:
            return await client.request("GET", "/hang"), await client.request("GET", "/")

    hung, after = run(go())
    assert (hung.status, hung.error, hung.body) == (0, "timeout", b"")
    assert after.status == 200


def test_frozen_server_times_out_then_recovers(own_server):
    async def go():
        async with HttpClient(own_server.url, timeout=0.3) as client:
            assert (await client.request("GET", "/")).status == 200
            with paused(own_server.proc):
                frozen = await client.request("GET", "/")
            return frozen, await client.request("GET", "/")

    frozen, after = run(go())
    assert (frozen.status, frozen.error) == (0, "timeout")
    assert after.status == 200


def test_connection_refused_is_an_error_kind():
    with closed_port() as port:
        r = run(fetch(f"http://127.0.0.1:{port}", "GET", "/"))
    assert (r.status, r.error) == (0, "connect_refused")
    assert r.error_detail


@pytest.mark.parametrize("path, kind", [("/close", "closed"), ("/reset", "reset")])
def test_server_dropping_the_connection_mid_way_is_counted(server, path, kind):
    async def go():
        async with HttpClient(server.url) as client:
            return await client.request("GET", path), await client.request("GET", "/")

    dropped, after = run(go())
    assert (dropped.status, dropped.error) == (0, kind)
    assert after.status == 200


def test_reset_on_a_reused_connection_is_retried_once_then_reported(server):
    async def go():
        async with HttpClient(server.url) as client:
            await client.request("GET", "/")  # leaves an idle keep-alive connection
            r = await client.request("GET", "/reset")
            return r, client.stale_retries, client.connections_opened

    r, retries, opened = run(go())
    assert r.error == "reset"
    assert (retries, opened) == (1, 2)


def test_post_is_not_retried(server):
    async def go():
        async with HttpClient(server.url) as client:
            await client.request("GET", "/")
            r = await client.request("POST", "/reset", body=b"x")
            return r, client.stale_retries

    r, retries = run(go())
    assert (r.error, retries) == ("reset", 0)


def test_connection_close_from_server_and_from_request(server):
    async def go():
        async with HttpClient(server.url) as client:
            bye = await client.request("GET", "/bye")
            ok = await client.request("GET", "/")
            asked = await client.request("GET", "/", headers=[("Connection", "close")])
            last = await client.request("GET", "/")
            return [bye, ok, asked, last], client.connections_opened

    rs, opened = run(go())
    assert [r.status for r in rs] == [200] * 4
    assert rs[0].body == b"bye"
    assert opened == 3  # /bye closes, the request with Connection: close closes


def test_in_flight_requests_end_as_client_closed(server):
    async def go():
        client = HttpClient(server.url)
        pending = asyncio.ensure_future(client.request("GET", "/hang"))
        await _checked_out(client)  # in flight on its connection
        await client.aclose()
        return await pending, client

    r, client = run(go())
    assert (r.status, r.error) == (0, "client_closed")
    with pytest.raises(RuntimeError):
        run(client.request("GET", "/"))


def test_non_loopback_target_is_refused_before_any_socket():
    with pytest.raises(TargetNotAllowedError, match="allow_hosts"):
        HttpClient("http://10.1.2.3:8080")  # synchronous: no event loop, no socket


def test_allowed_non_loopback_target_passes_the_safety_check():
    # Construction only: nothing is sent off the machine.
    client = HttpClient("http://10.1.2.3:8080", allow_hosts=["10.1.2.3"])
    assert client.addresses == ()


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/", "127.0.0.1:80", "http://", "http://127.0.0.1:99999", "http://h/?q"]
)
def test_bad_base_url_raises(url):
    with pytest.raises(ConfigError):
        HttpClient(url)


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("GET", "no-slash", ()),
        ("GET", "/a b", ()),
        ("GET", "/x\r\nInjected: 1", ()),
        ("G T", "/", ()),
        ("GET", "/", [("X-A", "1\r\nInjected: 1")]),
        ("GET", "/", [("Bad Name", "1")]),
    ],
)
def test_malformed_requests_raise(server, method, path, headers):
    with pytest.raises(ValueError):
        run(fetch(server.url, method, path, headers=headers))


def test_base_url_path_is_a_prefix_and_headers_are_sent(server):
    r = run(fetch(server.url + "/status", "GET", "/201", headers={"X-Test": "1"}))
    assert r.status == 201
