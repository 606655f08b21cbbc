"""The TCP fault proxy in process (against an asyncio echo upstream) and as its own
process behind the HTTP control endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import pytest

from nightly_pipeline.chaos import (
    FaultProxy,
    FaultSlot,
    ProxyConfig,
    ProxyControl,
    ProxyControlError,
    build_fault,
    fault_types,
)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def _proxied(**config: object) -> AsyncIterator[FaultProxy]:
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    proxy = FaultProxy(ProxyConfig(upstream_host="127.0.0.1", upstream_port=port, **config))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        upstream.close()


async def _roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    writer.close()
    return got


def test_pass_through_both_directions_and_counts() -> None:
    async def body() -> None:
        async with _proxied() as proxy:
            payload = bytes(range(256)) * 4096  # 1 MiB, many chunks
            assert await _roundtrip(proxy.port, payload) == payload
            # No wait: a link counts its bytes as it writes them, before the echo is back.
            status = proxy.status()
            assert status["links_total"] == 1
            assert status["bytes_upstream"] == status["bytes_downstream"] == len(payload)

    asyncio.run(body())


def test_cut_closes_links_and_refuses_then_restore_on_same_port() -> None:
    async def body() -> None:
        async with _proxied() as proxy:
            port = proxy.port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hi")
            assert await reader.readexactly(2) == b"hi"
            await proxy.cut()
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(reader.readexactly(1), 2)
            writer.close()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
            assert proxy.status()["cut"] is True
            await proxy.restore()
            assert proxy.port == port
            assert await _roundtrip(port, b"again") == b"again"
            assert proxy.status()["links_open"] <= 1

    asyncio.run(body())


def test_max_connections_rejects_extra_links() -> None:
    async def body() -> None:
        async with _proxied(max_connections=1) as proxy:
            r1, w1 = await asyncio.open_connection("127.0.0.1", proxy.port)
            w1.write(b"x")
            assert await r1.readexactly(1) == b"x"
            r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(r2.read(1), 2) == b""
            assert proxy.status()["links_rejected"] == 1
            w1.close()
            w2.close()

    asyncio.run(body())


def test_idle_links_are_closed() -> None:
    async def body() -> None:
        async with _proxied(idle_timeout_s=0.2) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(reader.read(1), 3) == b""
            assert proxy.status()["links_idle_closed"] == 1
            writer.close()

    asyncio.run(body())


def test_latency_fault_delays_and_is_removable_live() -> None:
    """The fault is visible as a delay of at least its latency (a busy machine only adds
    to it). Removed live, nothing stays delayed: the echo of a byte sent under a 10-minute
    delay arrives once it is removed, well before the read's 30 s deadline. No round trip
    has an upper bound; proxy speed is in bench/timing_figures.py."""

    async def body() -> None:
        async with _proxied() as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

            async def rtt() -> float:
                t0 = time.perf_counter()
                writer.write(b"p")
                await reader.readexactly(1)
                return time.perf_counter() - t0

            proxy.add_fault(FaultSlot("lat", build_fault("latency", {"latency": 150})))
            assert await rtt() >= 0.15 - 0.005  # the loop's clock granularity
            assert proxy.remove_fault("lat")
            assert not proxy.remove_fault("lat")

            hold = FaultSlot("hold", build_fault("latency", {"latency": 600_000}))
            proxy.add_fault(hold)
            writer.write(b"q")
            echoed = asyncio.create_task(reader.readexactly(1))
            await _until(lambda: proxy.status()["bytes_upstream"] == 2, "q to reach upstream")
            assert proxy.remove_fault("hold")
            assert await asyncio.wait_for(echoed, 30) == b"q"

            proxy.add_fault(FaultSlot("ctl", build_fault("noop"), stream="upstream"))
            assert [s.name for s in proxy.faults()] == ["ctl"]
            assert await asyncio.wait_for(_roundtrip(proxy.port, b"noop"), 30) == b"noop"
            writer.close()

    asyncio.run(body())


async def _until(condition: Callable[[], bool], what: str, deadline_s: float = 30) -> None:
    """Poll ``condition`` on the loop until true; fail after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while not condition():
        assert loop.time() < give_up, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("type_name", "params", "error"),
    [
        ("nope", {}, "unknown toxic type 'nope'"),
        ("noop", {"x": 1}, "unknown attributes ['x'] (noop takes no attributes)"),
        ("latency", {"latency": -1}, "latency must be >= 0"),
        ("latency", {"latency": "5"}, "latency must be a number"),
        ("latency", {"latency": True}, "latency must be a number"),
        (
            "latency",
            {"latency_ms": 10},
            "unknown attributes ['latency_ms'] (latency takes latency, jitter)",
        ),
        ("bandwidth", {}, "rate must be >= 1"),
        ("slicer", {"average_size": 1.5}, "average_size must be an integer"),
        ("slicer", {"average_size": 0}, "average_size must be >= 1"),
        ("slicer", {"average_size": 10, "size_variation": 10}, "size_variation must be smaller"),
    ],
)
def test_fault_params_are_validated(type_name: str, params: dict, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        build_fault(type_name, params)


def test_registry_and_slot_validation() -> None:
    assert set(fault_types()) == {
        "noop",
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
    }
    with pytest.raises(ValueError, match="toxicity"):
        FaultSlot("x", build_fault("noop"), toxicity=1.5)
    with pytest.raises(ValueError, match="stream was invalid"):
        FaultSlot("x", build_fault("noop"), stream="both")  # type: ignore[arg-type]
    assert build_fault("latency", {"latency": 5}).attributes() == {"latency": 5, "jitter": 0}


def test_config_rejects_non_loopback_and_bad_bounds() -> None:
    errors = ProxyConfig(upstream_host="10.0.0.1", upstream_port=0, max_connections=0).validate()
    assert any("not a loopback" in e for e in errors)
    assert any("upstream port" in e for e in errors)
    assert any("max_connections" in e for e in errors)


def test_proxy_process_and_http_control() -> None:
    async def serve_echo(ready: asyncio.Future[int], stop: asyncio.Event) -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        ready.set_result(server.sockets[0].getsockname()[1])
        await stop.wait()
        server.close()

    import threading

    loop = asyncio.new_event_loop()
    ready: asyncio.Future[int] = loop.create_future()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve_echo(ready, stop),))
    thread.start()
    deadline = time.monotonic() + 30
    while not ready.done():
        assert time.monotonic() < deadline, "the echo upstream never listened"
        time.sleep(0.01)
    upstream = ready.result()
    argv = [sys.executable, "-m", "nightly_pipeline.chaos.proxy", "--upstream"]
    argv += [f"127.0.0.1:{upstream}", "--control-port", "0", "--exit-on-stdin-eof"]
    argv += ["--name", "postgres"]  # as the stack launcher names its proxies
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.match(r"READY listen=127\.0\.0\.1:(\d+) control=(\S+) upstream=", line)
        assert m, line
        port, url = int(m.group(1)), m.group(2)
        with ProxyControl(url) as ctl:
            assert asyncio.run(_roundtrip(port, b"ping")) == b"ping"
            assert ctl.name == "postgres"  # the only proxy the process serves
            assert ctl.status()["links_total"] == 1
            assert ctl.cut()["enabled"] is False
            assert ctl.status()["cut"] is True
            with pytest.raises(ConnectionRefusedError):
                asyncio.run(_roundtrip(port, b"x"))
            assert ctl.restore()["enabled"] is True
            assert ctl.status()["cut"] is False
            assert asyncio.run(_roundtrip(port, b"pong")) == b"pong"
            toxics = ctl.set_latency(50)
            assert {t["name"] for t in toxics} == {"latency_upstream", "latency_downstream"}
            assert toxics[0]["type"] == "latency" and toxics[0]["attributes"]["latency"] == 50
            assert ctl.set_latency(20, direction="downstream")[1]["attributes"]["latency"] == 20
            assert ctl.set_latency(0) == []
            with pytest.raises(ProxyControlError, match="invalid toxic type") as refused:
                ctl.add_toxic("nope")
            assert refused.value.status == 400
            with pytest.raises(ProxyControlError, match="toxic not found"):
                ctl.remove_toxic("absent")
            with ctl.toxic("reset_peer", timeout=0) as reset:  # uvloop in this process
                assert reset["name"] == "reset_peer_downstream"
                with pytest.raises(ConnectionResetError):
                    asyncio.run(_roundtrip(port, b"x"))
            with ctl.down(), pytest.raises(ConnectionRefusedError):
                asyncio.run(_roundtrip(port, b"x"))
            assert ctl.toxics() == [] and ctl.proxy()["enabled"] is True
            assert ctl.version().startswith("2.")
        assert proc.stdin is not None
        proc.stdin.close()  # the parent went away: the proxy exits by itself
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()
