"""Loopback echo targets, each in its own OS process: for the engine's self-check,
its tests and the benchmarks (not the messaging platform: that is the testbed proper).

Use from tests (the process is always killed on exit, also when the test fails)::

    with http_server() as srv:           # srv.url == "http://127.0.0.1:PORT", srv.proc: Popen
        ...
        with paused(srv.proc): ...       # SIGSTOP ... SIGCONT (or pause(srv.proc, 0.5))
    with ws_server() as srv:             # srv.url == "ws://127.0.0.1:PORT"
        ...

or by hand: ``python -m nightly_pipeline.testbed.echo http --port 0`` prints ``READY <port>``.
A server exits by itself when its stdin closes, so a crashed parent leaves no orphan.

HTTP routes (HTTP/1.1 keep-alive, asyncio + uvloop + httptools, one process by default):
    GET  /                      200 "ok"
    GET  /delay?ms=N            200 after N ms
    POST /echo                  200, the request body
    GET  /status/{code}         that status
    GET  /chunked?n=K&size=S    chunked body of K chunks of S bytes, one write per chunk
    GET  /bytes?n=N             N-byte body
    GET  /stats                 {"connections": accepted, "open": n, "requests": n} (no delay)
    GET  /close                 headers and part of the body, then the server closes
    GET  /reset                 the server resets the connection (RST) without answering
    GET  /eof                   body delimited by connection close (no Content-Length)
    GET  /bye                   200 with "Connection: close", then the server closes
    GET  /hang                  never answers
WebSocket routes (the ``websockets`` package, which also answers pings):
    /echo                       echoes every message
    /push?n=K&interval_ms=M     sends "0".."K-1", then closes with 1000
    /close?code=C&reason=R      closes immediately with that code
    anything else               the handshake is rejected with 404
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from http import HTTPStatus
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

READY = "READY"


class ServerHandle(NamedTuple):
    url: str
    proc: subprocess.Popen[bytes]


# ---------------------------------------------------------------- parent side


@contextlib.contextmanager
def http_server(
    delay_ms: int = 0, workers: int = 1, cpu: int | None = None
) -> Iterator[ServerHandle]:
    """Start the HTTP server; ``workers > 1`` forks workers sharing one listening socket."""
    args = ["http", "--delay-ms", str(delay_ms), "--workers", str(workers)]
    with _spawn(args, cpu) as (port, proc):
        yield ServerHandle(f"http://127.0.0.1:{port}", proc)


@contextlib.contextmanager
def ws_server(cpu: int | None = None) -> Iterator[ServerHandle]:
    with _spawn(["ws"], cpu) as (port, proc):
        yield ServerHandle(f"ws://127.0.0.1:{port}", proc)


def pause(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """Freeze the server (all its processes) for ``seconds``; always resumed."""
    with paused(proc):
        time.sleep(seconds)


@contextlib.contextmanager
def paused(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """SIGSTOP the server's process group on enter, SIGCONT in ``finally``."""
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) while held."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


def get_json(url: str, path: str) -> dict:
    """Blocking GET of a JSON route of a test server (e.g. ``/stats``), no proxies."""
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


@contextlib.contextmanager
def _spawn(args: list[str], cpu: int | None) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    cmd = [sys.executable, "-m", "nightly_pipeline.testbed.echo", *args]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        yield _read_port(proc, timeout=20.0), proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _read_port(proc: subprocess.Popen[bytes], timeout: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if sel.select(left):
                line = proc.stdout.readline().decode().strip()
                if line.startswith(READY):
                    return int(line.split()[1])
                if not line and proc.poll() is not None:
                    break
    raise RuntimeError(f"test server {proc.args} not ready (exit code {proc.poll()})")


# ---------------------------------------------------------------- HTTP server


class _Stats:
    connections = 0
    open = 0
    requests = 0


def _response(status: int, body: bytes = b"", extra: bytes = b"") -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    length = b"" if status in (204, 304) or status < 200 else b"Content-Length: %d\r\n" % len(body)
    return b"HTTP/1.1 %d %s\r\n%s%s\r\n%s" % (status, phrase.encode(), length, extra, body)


_OK = _response(200, b"ok")
_CLOSE = b"Connection: close\r\n"


class _HttpServerProtocol(asyncio.Protocol):
    """Serves requests in order; each request gets a slot filled now or after a delay."""

    def __init__(self, stats: _Stats, delay_ms: int) -> None:
        import httptools

        self.stats = stats
        self.delay = delay_ms / 1000
        self.parser = httptools.HttpRequestParser(self)
        self.parse_error = httptools.HttpParserError
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.slots: deque[list] = deque()  # [response bytes | None, action]
        self.timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport
        self.stats.connections += 1
        self.stats.open += 1

    def connection_lost(self, exc):
        self.stats.open -= 1
        for timer in self.timers:
            timer.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            self.transport.write(_response(400, b"bad request", _CLOSE))
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.stats.requests += 1
        url, body = self.url.decode(), b"".join(self.body)
        self.url, self.body = b"", []
        method = self.parser.get_method()
        keep = self.parser.should_keep_alive()
        slot: list = [None, None]
        self.slots.append(slot)
        parts = urlsplit(url)
        path, query = parts.path, parse_qs(parts.query)
        delay = self.delay
        if path == "/":
            resp = _OK
        elif path == "/delay":
            delay += int(query.get("ms", ["0"])[0]) / 1000
            resp = _OK
        elif path == "/echo" and method == b"POST":
            resp = _response(200, body)
        elif path.startswith("/status/"):
            resp = _response(int(path.rsplit("/", 1)[1]), b"status")
        elif path == "/bytes":
            resp = _response(200, b"x" * int(query.get("n", ["0"])[0]))
        elif path == "/stats":
            s = self.stats
            data = {"connections": s.connections, "open": s.open, "requests": s.requests}
            resp, delay = _response(200, json.dumps(data).encode()), 0
        elif path == "/chunked":
            n, size = int(query.get("n", ["3"])[0]), int(query.get("size", ["5"])[0])
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            chunk = b"%x\r\n%s\r\n" % (size, b"c" * size)
            resp, slot[1] = head, ("chunks", [chunk] * n + [b"0\r\n\r\n"])
        elif path == "/close":
            resp, slot[1] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", "close"
        elif path == "/reset":
            resp, slot[1] = b"", "reset"
        elif path == "/eof":
            resp, slot[1] = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof", "close"
        elif path == "/bye":
            resp, slot[1] = _response(200, b"bye", _CLOSE), "close"
        elif path == "/hang":
            return
        else:
            resp = _response(404, b"not found")
        if method == b"HEAD" and isinstance(resp, bytes):
            resp = resp[: resp.index(b"\r\n\r\n") + 4]
        if not keep and slot[1] is None:
            slot[1] = "close"
        if delay > 0:
            loop = asyncio.get_running_loop()
            self.timers.append(loop.call_later(delay, self._fill, slot, resp))
        else:
            self._fill(slot, resp)

    def _fill(self, slot: list, resp: bytes) -> None:
        slot[0] = resp
        transport = self.transport
        while self.slots and self.slots[0][0] is not None and not transport.is_closing():
            resp, action = self.slots.popleft()
            if action == "reset":
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                return
            if isinstance(action, tuple):  # chunked: one write per chunk
                transport.write(resp)
                for chunk in action[1]:
                    transport.write(chunk)
                continue
            transport.write(resp)
            if action == "close":
                transport.close()
                return


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def _serve_http(sock: socket.socket, delay_ms: int) -> None:
    loop = asyncio.get_running_loop()
    stats = _Stats()
    server = await loop.create_server(lambda: _HttpServerProtocol(stats, delay_ms), sock=sock)
    async with server:
        await _until_stdin_closes()


# ---------------------------------------------------------------- WebSocket server


async def _ws_handler(ws) -> None:
    parts = urlsplit(ws.request.path)
    query = parse_qs(parts.query)
    if parts.path == "/echo":
        async for message in ws:
            await ws.send(message)
    elif parts.path == "/push":
        n = int(query.get("n", ["10"])[0])
        interval = int(query.get("interval_ms", ["0"])[0]) / 1000
        for i in range(n):
            await ws.send(str(i))
            if interval:
                await asyncio.sleep(interval)
        await ws.close(1000, "done")
    elif parts.path == "/close":
        await ws.close(int(query.get("code", ["1000"])[0]), query.get("reason", [""])[0])


def _ws_process_request(ws, request):
    if urlsplit(request.path).path not in ("/echo", "/push", "/close"):
        return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def _serve_ws(host: str, port: int) -> None:
    from websockets.asyncio.server import serve

    async with serve(_ws_handler, host, port, process_request=_ws_process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(READY, port, flush=True)
        await _until_stdin_closes()


# ---------------------------------------------------------------- entry point


async def _until_stdin_closes() -> None:
    """Return when the parent goes away (our stdin reaches EOF)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def on_readable() -> None:
        if not os.read(0, 4096) and not done.done():
            done.set_result(None)

    loop.add_reader(0, on_readable)
    try:
        await done
    finally:
        loop.remove_reader(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["http", "ws"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import uvloop

    if args.kind == "ws":
        uvloop.run(_serve_ws(args.host, args.port))
        return
    sock = _listen(args.host, args.port)
    print(READY, sock.getsockname()[1], flush=True)
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break
    uvloop.run(_serve_http(sock, args.delay_ms))


if __name__ == "__main__":
    main()
