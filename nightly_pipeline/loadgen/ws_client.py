"""WebSocket sessions with accounting, on the ``websockets`` asyncio client.

``ws_connect`` never raises for network errors: it returns a ``WsSession`` whose ``error``
is set (``connect_refused``, ``connect_timeout``, ``connect_error``, ``handshake_status``
with ``status`` = the HTTP status, ``handshake``). A connected session never raises on a
remote close either: it records ``close_code``/``close_reason`` and ``recv`` returns
None. Misuse (bad URL, target not allowed) raises before any socket is opened.

Counters are plain attributes for the engine to turn into metrics: ``connect_ms``
(ws_connecting), ``msgs_received``/``bytes_received`` (ws_msgs_received), ``msgs_sent``/
``bytes_sent``, ``last_ping_rtt_ms`` and ``ping()``'s return value (ws_ping_rtt),
``close_code``. Received messages carry ``perf_counter()`` receive timestamps and go
either to an ``on_message(data, received_at)`` callback or to a queue read with
``recv()`` / ``async for`` (at most ``max_queue`` unread messages; then reading pauses
and the server sees TCP backpressure). A failing callback closes the session with 1011
and is kept in ``callback_error``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass
from time import perf_counter
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from nightly_pipeline.loadgen.errors import ConfigError
from nightly_pipeline.loadgen.safety import resolve_target

__all__ = ["WsMessage", "WsSession", "ws_connect"]

OnMessage = Callable[[str | bytes, float], None]
_END = object()


@dataclass(slots=True)
class WsMessage:
    data: str | bytes
    received_at: float  # perf_counter() when the message was taken off the connection


def _size(data: str | bytes) -> int:
    if data.__class__ is bytes or data.isascii():  # type: ignore[union-attr]
        return len(data)
    return len(data.encode())  # type: ignore[union-attr]


class WsSession:
    """One WebSocket connection and its counters (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.error: str | None = None
        self.error_detail = ""
        self.status = 0  # HTTP status of the handshake response (101 when connected)
        self.connect_ms = 0.0
        self.connected_at = 0.0
        self.closed_at = 0.0
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_by_client = False
        self.msgs_received = 0
        self.bytes_received = 0
        self.msgs_sent = 0
        self.bytes_sent = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.last_ping_rtt_ms: float | None = None
        self.callback_error: BaseException | None = None
        self._conn: ClientConnection | None = None
        self._queue: asyncio.Queue[WsMessage | object] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._on_message: OnMessage | None = None

    @property
    def ok(self) -> bool:
        """Connected (now or earlier) without a connect error."""
        return self.error is None

    @property
    def closed(self) -> bool:
        return self.error is not None or self.closed_at > 0

    def _start(self, conn: ClientConnection, on_message: OnMessage | None, max_queue: int) -> None:
        self._conn = conn
        self._on_message = on_message
        self._queue = asyncio.Queue(max_queue)
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"ws-reader {self.url}"
        )

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        queue = self._queue
        on_message = self._on_message
        try:
            while True:
                data = await conn.recv()
                received_at = perf_counter()
                self.msgs_received += 1
                self.bytes_received += _size(data)
                if on_message is not None:
                    on_message(data, received_at)
                else:
                    await queue.put(WsMessage(data, received_at))
        except ConnectionClosed:
            pass
        except Exception as exc:  # the callback failed: stop the session, keep the reason
            self.callback_error = exc
            await conn.close(1011, "client callback failed")
        finally:
            self._record_close()
            if not queue.full():
                queue.put_nowait(_END)

    def _record_close(self) -> None:
        conn = self._conn
        if self.closed_at == 0 and conn is not None:
            self.closed_at = perf_counter()
            self.close_code = conn.close_code if conn.close_code is not None else 1006
            self.close_reason = conn.close_reason or ""

    async def send(self, data: str | bytes) -> bool:
        """Send one message; False (and nothing raised) when the connection is closed."""
        if self._conn is None:
            return False
        try:
            await self._conn.send(data)
        except ConnectionClosed:
            return False
        self.msgs_sent += 1
        self.bytes_sent += _size(data)
        return True

    async def recv(self, timeout: float | None = None) -> WsMessage | None:
        """Next message, or None once the connection is closed (or on timeout)."""
        queue = self._queue
        if self.closed and queue.empty():
            return None
        try:
            async with asyncio.timeout(timeout):
                item = await queue.get()
        except TimeoutError:
            return None
        if item is _END:
            return None
        return item  # type: ignore[return-value]

    async def __aiter__(self) -> AsyncIterator[WsMessage]:
        while (message := await self.recv()) is not None:
            yield message

    async def ping(self, timeout: float = 10.0) -> float | None:
        """Round-trip time of one ping in ms, or None if closed or no pong in time."""
        conn = self._conn
        if conn is None or self.closed:
            return None
        started = perf_counter()
        try:
            pong = await conn.ping()
            self.pings_sent += 1
            async with asyncio.timeout(timeout):
                await pong
        except (ConnectionClosed, TimeoutError):
            return None
        rtt = (perf_counter() - started) * 1000
        self.pongs_received += 1
        self.last_ping_rtt_ms = rtt
        return rtt

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (idempotent) and wait for the reader; the close code is recorded."""
        conn = self._conn
        if conn is None:
            return
        if not self.closed:
            self.closed_by_client = True
        await conn.close(code, reason)
        if self._reader is not None:
            await self._reader
        self._record_close()

    async def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait for the remote side to close; True if closed within ``timeout``."""
        if self._reader is None:
            return True
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._reader)
        except TimeoutError:
            return False
        return True


async def ws_connect(
    url: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    open_timeout: float = 10,
    ping_interval: float | None = None,
    allow_hosts: Collection[str] = (),
    on_message: OnMessage | None = None,
    max_size: int | None = 2**20,
    max_queue: int = 1024,
    compression: str | None = None,
) -> WsSession:
    """Open a session; connect failures are returned in ``session.error``, not raised.

    ``ping_interval`` enables the library's keepalive pings (its ``latency`` is then on
    the connection); ``compression="deflate"`` negotiates permessage-deflate (off by
    default, like k6). Messages go to ``on_message`` if given, else to ``recv()``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError as exc:
        raise ConfigError(f"invalid WebSocket URL {url!r}: {exc}") from exc
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"WebSocket URL must be ws://host[:port]/path, got {url!r}")
    # Checked before any socket exists; connect to exactly the verified addresses.
    addresses: tuple[str | None, ...] = resolve_target(url, allow_hosts) or (None,)

    session = WsSession(url)
    started = perf_counter()
    conn: ClientConnection | None = None
    for address in addresses:
        target = {"host": address, "port": port} if address is not None else {}
        try:
            conn = await connect(
                url,
                additional_headers=list(headers),
                user_agent_header="nightly-pipeline-loadgen",
                open_timeout=open_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                max_size=max_size,
                compression=compression,
                proxy=None,  # never route load through a proxy from the environment
                **target,
            )
        except InvalidURI as exc:
            raise ConfigError(f"invalid WebSocket URL {url!r}: {exc}") from exc
        except ConnectionRefusedError as exc:
            session.error, session.error_detail = "connect_refused", str(exc)
        except TimeoutError as exc:
            session.error = "connect_timeout"
            session.error_detail = str(exc) or f"no handshake within {open_timeout} s"
            break
        except InvalidStatus as exc:
            session.error, session.error_detail = "handshake_status", str(exc)
            session.status = exc.response.status_code
            break
        except InvalidHandshake as exc:
            session.error, session.error_detail = "handshake", str(exc)
            break
        except OSError as exc:
            session.error, session.error_detail = "connect_error", str(exc)
        else:
            session.error, session.error_detail = None, ""
            break
    session.connect_ms = (perf_counter() - started) * 1000
    if conn is not None:
        session.connected_at = perf_counter()
        session.status = conn.response.status_code if conn.response else 101
        session._start(conn, on_message, max_queue)
    return session
