"""ws_connect / WsSession against the real WebSocket server of servers.py."""

import psutil
import pytest
import uvloop

from nightly_pipeline.loadgen.errors import ConfigError, TargetNotAllowedError
from nightly_pipeline.loadgen.ws_client import WsSession, ws_connect
from tests.loadgen.servers import closed_port, paused, ws_server


def run(coro):
    return uvloop.run(coro)


@pytest.fixture(scope="module")
def server():
    with ws_server() as srv:
        yield srv


def test_connect_and_echo_with_counters(server):
    async def go():
        session = await ws_connect(server.url + "/echo")
        assert await session.send("hello")
        assert await session.send(b"\x00\x01\x02")
        assert await session.send("héllo")
        got = [await session.recv(timeout=5) for _ in range(3)]
        await session.close()
        return session, got

    session, got = run(go())
    assert (session.error, session.status) == (None, 101)
    assert session.connect_ms > 0
    assert [m.data for m in got] == ["hello", b"\x00\x01\x02", "héllo"]
    assert all(session.connected_at <= m.received_at <= session.closed_at for m in got)
    assert (session.msgs_sent, session.bytes_sent) == (3, 5 + 3 + 6)
    assert (session.msgs_received, session.bytes_received) == (3, 5 + 3 + 6)
    assert (session.close_code, session.closed_by_client) == (1000, True)


def test_pushed_messages_then_server_close_1000(server):
    async def go():
        session = await ws_connect(server.url + "/push?n=20&interval_ms=1")
        got = [m async for m in session]
        return session, got

    session, got = run(go())
    assert [m.data for m in got] == [str(i) for i in range(20)]
    stamps = [m.received_at for m in got]
    assert stamps == sorted(stamps)
    assert session.msgs_received == 20
    assert (session.close_code, session.close_reason) == (1000, "done")
    assert not session.closed_by_client


def test_callback_receives_messages_with_timestamps(server):
    received = []

    async def go():
        session = await ws_connect(
            server.url + "/push?n=5", on_message=lambda data, at: received.append((data, at))
        )
        assert await session.wait_closed(timeout=5)
        return session

    session = run(go())
    assert [data for data, _ in received] == ["0", "1", "2", "3", "4"]
    assert all(at >= session.connected_at for _, at in received)
    assert session.msgs_received == 5


def test_failing_callback_closes_the_session_with_1011(server):
    def on_message(data, at):
        raise ValueError("bad handler")

    async def go():
        session = await ws_connect(server.url + "/echo", on_message=on_message)
        assert await session.send("x")
        assert await session.wait_closed(timeout=5)
        return session

    session = run(go())
    assert isinstance(session.callback_error, ValueError)
    assert session.close_code == 1011
    assert session.msgs_received == 1


def test_remote_close_code_4001_is_recorded_not_raised(server):
    async def go():
        session = await ws_connect(server.url + "/close?code=4001&reason=go+away")
        assert await session.wait_closed(timeout=5)
        return session, await session.recv(), await session.send("late"), await session.ping()

    session, message, sent, rtt = run(go())
    assert (session.close_code, session.close_reason) == (4001, "go away")
    assert (message, sent, rtt) == (None, False, None)
    assert session.error is None  # connected fine; the close is not a connect error


def test_ping_rtt(server):
    async def go():
        session = await ws_connect(server.url + "/echo")
        rtts = [await session.ping() for _ in range(3)]
        await session.close()
        return session, rtts

    session, rtts = run(go())
    assert all(rtt is not None and rtt > 0 for rtt in rtts)
    assert (session.pings_sent, session.pongs_received) == (3, 3)
    assert session.last_ping_rtt_ms == rtts[-1]


def test_ping_without_pong_returns_none(server):
    async def go():
        session = await ws_connect(server.url + "/echo")
        with paused(server.proc):
            rtt = await session.ping(timeout=0.2)
        after = await session.ping(timeout=5)
        await session.close()
        return rtt, after

    rtt, after = run(go())
    assert rtt is None
    assert after is not None


def test_connection_refused_is_an_error_kind():
    with closed_port() as port:
        session = run(ws_connect(f"ws://127.0.0.1:{port}/echo"))
    assert isinstance(session, WsSession)
    assert (session.error, session.close_code) == ("connect_refused", None)
    assert session.closed


def test_rejected_handshake_reports_the_status(server):
    session = run(ws_connect(server.url + "/nope"))
    assert (session.error, session.status) == ("handshake_status", 404)


def test_non_loopback_target_is_refused_before_any_socket():
    before = {c.raddr for c in psutil.Process().net_connections() if c.raddr}
    with pytest.raises(TargetNotAllowedError, match="allow_hosts"):
        run(ws_connect("ws://10.1.2.3:9/echo"))
    after = {c.raddr for c in psutil.Process().net_connections() if c.raddr}
    assert not any(addr.ip == "10.1.2.3" for addr in after - before)


@pytest.mark.parametrize("url", ["http://127.0.0.1/echo", "ws://", "ws://127.0.0.1:99999/"])
def test_bad_url_raises(url):
    with pytest.raises(ConfigError):
        run(ws_connect(url))
