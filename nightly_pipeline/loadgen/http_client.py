"""Hot-path HTTP/1.1 client for load generation.

Built on asyncio Protocols (run it under uvloop) and ``httptools``' C parser, with a
keep-alive connection pool for the client's one origin. Cheap per request: a cached
request head, one future, one timer, one write.

Network failures never raise: ``request`` returns ``HttpResponse(status=0, error=KIND)``
so the load loop counts them. Error kinds:

    connect_refused   nothing listens on the port
    connect_timeout   the TCP (or TLS) connect took longer than ``connect_timeout``
    connect_error     other connect failure (unreachable, TLS handshake, ...)
    pool_timeout      no connection became free in time (``max_connections`` all busy)
    timeout           the whole request took longer than ``timeout``
    reset             the connection was reset (RST)
    closed            the server closed the connection before the response was complete
    protocol          malformed response
    client_closed     ``aclose()`` was called while the request was in flight

A reused keep-alive connection that the server had already closed (nothing received) is
retried once on another connection for idempotent methods; see ``stale_retries``.
Misuse (bad URL, bad path or header, use after ``aclose``) raises.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import re
import ssl as ssllib
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from nightly_pipeline.loadgen.errors import ConfigError
from nightly_pipeline.loadgen.safety import resolve_target

__all__ = ["HttpClient", "HttpResponse"]

HeaderPairs = Iterable[tuple[str | bytes, str | bytes]] | Mapping[str, str]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
_TARGET = re.compile(r"[\x21-\x7e]+").fullmatch  # visible ASCII: already percent-encoded
_CACHE_MAX = 1024
_NO_JSON: Any = object()


@dataclass(slots=True)
class HttpResponse:
    """One request's outcome. ``sent_at``/``finished_at`` are ``perf_counter()`` values at
    the write and at the last byte (for errors: when the attempt started and failed)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    sent_at: float
    finished_at: float
    error: str | None = None
    error_detail: str = field(default="", repr=False)

    def header(self, name: str | bytes) -> bytes | None:
        """First value of a header, case-insensitive."""
        key = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        for k, v in self.headers:
            if k.lower() == key:
                return v
        return None

    def json(self) -> Any:
        return jsonlib.loads(self.body)


def _error(kind: str, detail: str, started: float) -> HttpResponse:
    return HttpResponse(0, [], b"", started, perf_counter(), kind, detail)


def _encode_headers(headers: HeaderPairs) -> tuple[bytes, bool]:
    """``Name: value\\r\\n`` lines and whether they ask for ``Connection: close``."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    close = False
    for name, value in items:
        n = name.encode("latin-1") if isinstance(name, str) else name
        v = value.encode("latin-1") if isinstance(value, str) else value
        if not _TOKEN(n.decode("latin-1")) or b"\r" in v or b"\n" in v or b"\0" in v:
            raise ValueError(f"invalid header {name!r}: {value!r}")
        if n.lower() == b"connection" and v.strip().lower() == b"close":
            close = True
        out.append(b"%s: %s\r\n" % (n, v))
    return b"".join(out), close


class _Connection(asyncio.Protocol):
    """One keep-alive connection; owned by one request at a time."""

    __slots__ = (
        "_body",
        "_finished_at",
        "_head",
        "_headers",
        "_parser",
        "_pool",
        "_status",
        "_timer",
        "_waiter",
        "closed",
        "dropped",
        "got_data",
        "headers_done",
        "reusable",
        "transport",
        "uses",
    )

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._parser = HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[str, str] | None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._status = 0
        self._finished_at = 0.0
        self._head = False
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.dropped = False
        self.got_data = False
        self.headers_done = False
        self.reusable = True
        self.uses = 0  # requests started on this connection

    # --- driven by the request coroutine
    def start(self, waiter: asyncio.Future, deadline: float, head: bool) -> None:
        self._waiter = waiter
        self._headers = []
        self._body = []
        self._head = head
        self.uses += 1
        self.got_data = False
        self.headers_done = False
        self._timer = self._pool.loop.call_at(deadline, self._on_timeout)

    def response(self, sent_at: float) -> HttpResponse:
        parts = self._body
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        return HttpResponse(self._status, self._headers, body, sent_at, self._finished_at)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is unusable
            self.reusable = False
            self.abort()
            return
        self.got_data = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._finish(("protocol", "unexpected protocol upgrade"))
        except HttpParserError as exc:
            self._finish(("protocol", str(exc) or exc.__class__.__name__))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None:
            self._pool.lost(self)
        elif self.headers_done and self._parser.should_keep_alive() is False and self._eof_body():
            self._finished_at = perf_counter()
            self._finish(None)
        elif isinstance(exc, ConnectionResetError):
            self._finish(("reset", str(exc)))
        else:
            self._finish(("closed", "server closed the connection" + (f": {exc}" if exc else "")))

    # --- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self._status = self._parser.get_status_code()
        if self._head and self._status >= 200:  # no body follows, whatever the headers say
            self._finished_at = perf_counter()
            self.reusable = False
            self._finish(None)

    def on_body(self, body: bytes) -> None:
        if self._waiter is not None:  # not the (ignored) body of a HEAD response
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is None:  # e.g. the tail of a HEAD response
            return
        if self._status < 200:  # 1xx interim response: the real one follows
            self._headers = []
            self.headers_done = False
            return
        self._finished_at = perf_counter()
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._finish(None)

    # --- internals
    def _finish(self, result: tuple[str, str] | None) -> None:
        if result is not None:
            self.reusable = False
        waiter = self._waiter
        if waiter is None:  # already answered (e.g. garbage after a complete response)
            return
        self._waiter = None
        self._timer.cancel()  # type: ignore[union-attr]
        if not waiter.done():
            waiter.set_result(result)

    def _on_timeout(self) -> None:
        if self._waiter is not None:
            self._finish(("timeout", "request timed out"))
            self.abort()

    def _eof_body(self) -> bool:
        """Whether the body was delimited by the connection close (no length given)."""
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"content-length" or (
                lname == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True


class _Pool:
    """Connections to one origin: idle ones reused LIFO, at most ``max_connections``."""

    def __init__(self, client: HttpClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.idle: list[_Connection] = []
        self.conns: set[_Connection] = set()
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.total = 0  # open or opening connections, idle or busy
        self.closing = False

    def release(self, conn: _Connection) -> None:
        if not conn.reusable or conn.closed or self.closing:
            self.drop(conn)
            return
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def drop(self, conn: _Connection) -> None:
        if conn.dropped:
            return
        conn.dropped = True
        conn.abort()
        self.conns.discard(conn)
        self._slot_freed()

    def lost(self, conn: _Connection) -> None:
        """The connection closed while nobody was waiting on it."""
        try:
            self.idle.remove(conn)
        except ValueError:
            return  # busy: its owner drops it
        self.drop(conn)

    def _slot_freed(self) -> None:
        while self.waiters:  # hand the slot to a waiter, which opens a connection
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.total -= 1

    def _give_back(self, got: _Connection | None) -> None:
        if got is None:
            self._slot_freed()
        else:
            self.release(got)

    async def acquire(self, deadline: float) -> _Connection | tuple[str, str]:
        """A connection (idle, handed over, or new), or an error ``(kind, detail)``."""
        client = self.client
        while True:
            if self.idle:
                return self.idle.pop()
            if self.total < client.max_connections:
                self.total += 1
                return await self._open(deadline)
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            limit = min(deadline, self.loop.time() + client.pool_timeout)
            try:
                async with asyncio.timeout_at(limit):
                    got = await waiter
            except TimeoutError:
                if waiter.done() and not waiter.cancelled():
                    self._give_back(waiter.result())
                kind = "pool_timeout" if limit < deadline else "timeout"
                return kind, f"no free connection (max_connections={client.max_connections})"
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._give_back(waiter.result())
                raise
            if got is None:
                if self.closing:
                    return "client_closed", "client closed"
                return await self._open(deadline)
            if not got.closed:
                return got
            self.drop(got)

    async def _open(self, deadline: float) -> _Connection | tuple[str, str]:
        """Open a connection in a slot already counted in ``total``."""
        client = self.client
        loop = self.loop
        limit = min(deadline, loop.time() + client.connect_timeout)
        hosts = client.addresses or (client.host,)
        result: tuple[str, str] = ("connect_error", "no address")
        try:
            async with asyncio.timeout_at(limit):
                for host in hosts:
                    try:
                        _, conn = await loop.create_connection(
                            lambda: _Connection(self),
                            host,
                            client.port,
                            ssl=client.ssl_context,
                            server_hostname=client.host if client.ssl_context else None,
                        )
                    except ConnectionRefusedError as exc:
                        result = ("connect_refused", str(exc))
                    except (OSError, ssllib.SSLError) as exc:
                        result = ("connect_error", str(exc) or exc.__class__.__name__)
                    else:
                        break
                else:
                    self._slot_freed()
                    return result
        except TimeoutError:
            self._slot_freed()
            if limit < deadline:
                return "connect_timeout", f"connect took over {client.connect_timeout} s"
            return "timeout", "request timed out while connecting"
        except BaseException:
            self._slot_freed()
            raise
        if self.closing:
            conn.dropped = True
            conn.abort()
            self._slot_freed()
            return "client_closed", "client closed"
        self.conns.add(conn)
        client.connections_opened += 1
        return conn

    async def aclose(self) -> None:
        self.closing = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for conn in list(self.conns):
            if conn._waiter is not None:
                conn._finish(("client_closed", "client closed"))
            self.drop(conn)
        self.idle.clear()
        await asyncio.sleep(0)


class HttpClient:
    """Keep-alive HTTP/1.1 client for one origin (``base_url``); paths are relative to it.

    Plain attributes for the engine: ``connections_opened``, ``stale_retries``,
    ``open_connections``, ``idle_connections``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 256,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        pool_timeout: float | None = None,
        default_headers: HeaderPairs = (),
        allow_hosts: Collection[str] = (),
        ssl_context: ssllib.SSLContext | None = None,
    ) -> None:
        try:
            url = urlsplit(base_url)
            port = url.port
        except ValueError as exc:
            raise ConfigError(f"invalid base_url {base_url!r}: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"base_url must be http://host[:port][/prefix], got {base_url!r}")
        if url.query or url.fragment:
            raise ConfigError(f"base_url must not have a query or fragment: {base_url!r}")
        if max_connections < 1 or connect_timeout <= 0 or timeout <= 0:
            raise ConfigError("max_connections, connect_timeout and timeout must be positive")
        self.host = url.hostname
        self.port = port or (443 if url.scheme == "https" else 80)
        # Checked before any socket exists; connections go to exactly these addresses.
        self.addresses = resolve_target(base_url, allow_hosts)
        if url.scheme == "https" and ssl_context is None:
            ssl_context = ssllib.create_default_context()
        self.ssl_context = ssl_context if url.scheme == "https" else None
        self.prefix = url.path.rstrip("/")
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.pool_timeout = connect_timeout if pool_timeout is None else pool_timeout
        default_port = 443 if url.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if self.port == default_port else f"{host}:{self.port}"
        extra, self._default_close = _encode_headers(default_headers)
        if b"user-agent:" not in extra.lower():
            extra += b"User-Agent: nightly-pipeline-loadgen\r\n"
        self._common = b"Host: %s\r\n%s" % (authority.encode("idna"), extra)
        self._cache: dict[tuple[str, str], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: _Pool | None = None
        self._closed = False
        self.connections_opened = 0
        self.stale_retries = 0

    @property
    def open_connections(self) -> int:
        return self._pool.total if self._pool else 0

    @property
    def idle_connections(self) -> int:
        return len(self._pool.idle) if self._pool else 0

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _head(self, method: str, path: str) -> bytes:
        """Request line and common headers, without the final CRLF."""
        if not _TOKEN(method):
            raise ValueError(f"invalid HTTP method {method!r}")
        if not _TARGET(path) or not path.startswith("/"):
            raise ValueError(f"path must start with '/' and be percent-encoded: {path!r}")
        return b"%s %s%s HTTP/1.1\r\n%s" % (
            method.encode(),
            self.prefix.encode(),
            path.encode(),
            self._common,
        )

    def _encode(
        self, method: str, path: str, body: bytes | None, headers: HeaderPairs
    ) -> tuple[bytes, bytes | None, bool]:
        """(head, separately written body or None, connection: close) for one request."""
        if body is None and not headers:
            key = (method, path)
            data = self._cache.get(key)
            if data is None:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                data = self._cache[key] = self._head(method, path) + b"\r\n"
            return data, None, self._default_close
        head = self._head(method, path)
        close = self._default_close
        if headers:
            lines, close_asked = _encode_headers(headers)
            head += lines
            close = close or close_asked
        if body is None:
            if method in ("POST", "PUT", "PATCH"):
                head += b"Content-Length: 0\r\n"
            return head + b"\r\n", None, close
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        if len(body) <= 16384:
            return head + body, None, close
        return head, body, close

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: HeaderPairs = (),
        json: Any = _NO_JSON,
    ) -> HttpResponse:
        """Send one request; never raises for network errors (see the module docstring)."""
        if self._closed:
            raise RuntimeError("HttpClient is closed")
        if json is not _NO_JSON:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            headers = [*(headers.items() if isinstance(headers, Mapping) else headers)]
            headers.append((b"Content-Type", b"application/json"))
        data, tail, close = self._encode(method, path, body, headers)
        loop = asyncio.get_running_loop()
        pool = self._pool
        if loop is not self._loop:
            pool = self._bind(loop)
        started = perf_counter()
        deadline = loop.time() + self.timeout
        retried = False
        while True:
            idle = pool.idle  # type: ignore[union-attr]
            if idle:
                conn = idle.pop()
            else:
                got = await pool.acquire(deadline)  # type: ignore[union-attr]
                if got.__class__ is tuple:
                    return _error(got[0], got[1], started)  # type: ignore[index]
                conn = got  # type: ignore[assignment]
            if conn.closed:
                pool.drop(conn)  # type: ignore[union-attr]
                continue
            waiter = loop.create_future()
            conn.start(waiter, deadline, method == "HEAD")
            sent_at = perf_counter()
            transport = conn.transport
            transport.write(data)  # type: ignore[union-attr]
            if tail is not None:
                transport.write(tail)  # type: ignore[union-attr]
            try:
                result = await waiter
            except BaseException:  # cancelled: the connection's state is unknown
                pool.drop(conn)  # type: ignore[union-attr]
                raise
            if result is None:
                response = conn.response(sent_at)
                if close:
                    conn.reusable = False
                pool.release(conn)  # type: ignore[union-attr]
                return response
            pool.drop(conn)  # type: ignore[union-attr]
            kind, detail = result
            if (
                conn.uses > 1
                and not retried
                and not conn.got_data
                and kind in ("closed", "reset")
                and method in _IDEMPOTENT
            ):
                retried = True
                self.stale_retries += 1
                continue
            return HttpResponse(0, [], b"", sent_at, perf_counter(), kind, detail)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> _Pool:
        if self._loop is not None:
            raise RuntimeError("HttpClient is bound to the event loop of its first request")
        self._loop = loop
        self._pool = _Pool(self, loop)
        return self._pool

    async def aclose(self) -> None:
        """Close every connection; requests still in flight return ``client_closed``."""
        self._closed = True
        if self._pool is not None:
            await self._pool.aclose()
