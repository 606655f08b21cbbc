"""Loopback servers and proxies for the chaos tests (asyncio in the test's own loop, or a
Toxiproxy-compatible control server on a thread for synchronous clients)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nightly_pipeline.chaos import FaultProxy, FaultSlot, ProxyConfig, build_fault
from nightly_pipeline.chaos.backend import NoHandles
from nightly_pipeline.chaos.control_http import ControlServer, ProxyCollection

GUARD_S = 30.0  # a hang guard, far above anything expected: never a latency assertion


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


def sender(payload: bytes, *, close: bool = True) -> Callable[..., Any]:
    """A server that sends ``payload`` on connect, then closes (or echoes)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            if not close:
                await echo(reader, writer)
        writer.close()

    return serve


class Sink:
    """A server recording what each connection received, and when it ended."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []
        self.ended: list[str] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        self.received.append(got)
        try:
            while data := await reader.read(65536):
                got += data
            self.ended.append("eof")
        except ConnectionResetError:
            self.ended.append("reset")
        writer.close()


@contextlib.asynccontextmanager
async def proxied(handler: Callable[..., Any] = echo, **config: Any) -> AsyncIterator[FaultProxy]:
    upstream = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    proxy = FaultProxy(ProxyConfig(upstream_host="127.0.0.1", upstream_port=port, **config))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        upstream.close()


def toxic(
    type_name: str, stream: str = "downstream", toxicity: float = 1.0, **attrs: Any
) -> FaultSlot:
    return FaultSlot(f"{type_name}_{stream}", build_fault(type_name, attrs), stream, toxicity)  # type: ignore[arg-type]


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until EOF (guarded)."""
    return await asyncio.wait_for(reader.read(), GUARD_S)


async def nothing_for(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when no byte (nor EOF) arrives within ``seconds``."""
    try:
        await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return True
    return False


# ---------------------------------------------------------------- synchronous side


def sync_roundtrip(port: int, payload: bytes = b"ping") -> tuple[bytes, float]:
    """Send ``payload`` through a new connection, read it back; (data, seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD_S) as sock:
        t0 = time.perf_counter()
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = sock.recv(65536)
            if not data:
                break
            got += data
        return got, time.perf_counter() - t0


@dataclass
class ServerThread:
    """A control server (no proxies yet) and an echo upstream, on their own loop thread."""

    url: str
    port: int
    echo_port: int
    proxies: ProxyCollection
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop (its state is not thread-safe)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(GUARD_S)


@contextlib.contextmanager
def server_thread() -> Iterator[ServerThread]:
    loop = asyncio.new_event_loop()
    proxies = ProxyCollection()
    control = ControlServer(proxies)

    async def setup() -> asyncio.Server:
        await control.start()
        return await asyncio.start_server(echo, "127.0.0.1", 0)

    thread = threading.Thread(target=loop.run_forever, name="toxiproxy-api", daemon=True)
    thread.start()
    upstream = asyncio.run_coroutine_threadsafe(setup(), loop).result(GUARD_S)

    async def teardown() -> None:
        await control.stop()
        await proxies.stop_all()
        upstream.close()

    try:
        yield ServerThread(
            control.url, control.port, upstream.sockets[0].getsockname()[1], proxies, loop
        )
    finally:
        asyncio.run_coroutine_threadsafe(teardown(), loop).result(GUARD_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(GUARD_S)
        loop.close()


class ProxyBackend(NoHandles):
    """The platform's address book and nothing more: a real proxy's control URL (the
    link faults need no process handle)."""

    def __init__(self, control: str) -> None:
        self.control = control

    def link_controls(self) -> Mapping[str, str]:
        return {"redis": self.control}


PROXY_ARGS = ("--name", "redis", "--upstream", "127.0.0.1:9", "--exit-on-stdin-eof")


@contextlib.contextmanager
def proxy_process() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A fault proxy process named ``redis`` (its upstream need not answer): its control
    URL and the process (stopped on exit, if still running)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "nightly_pipeline.chaos.proxy", *PROXY_ARGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    ready = re.search(r"control=(\S+)", child.stdout.readline())
    assert ready, "the proxy did not print its READY line"
    try:
        yield ready.group(1), child
    finally:
        child.terminate()
        child.wait(timeout=10)
