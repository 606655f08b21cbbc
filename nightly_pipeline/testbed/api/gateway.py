"""WebSocket gateway ``GET /v1/ws``: registers each user's sockets and pushes every
message published on ``messaging:deliver`` to every socket of its recipients.

Per socket: a bounded send queue (``ws_send_queue``) drained by a sender task; the frames
waiting in all of them are the gauge ``ws_send_queue_frames``. A full
queue counts the frame in ``ws_overload_total``; a socket still overloaded after
``OVERLOAD_GRACE_S`` is closed with 1013 (try again later). The server pings every
``ws_heartbeat_s``; a socket with no frame from its client (a pong, a ping of its own, a
text frame) for ``heartbeat_timeout_s`` (1.5 intervals unless ``ws_heartbeat_timeout_s``
is set) is terminated (``ws_heartbeat_terminate_total``, close code 1001), measured to
the moment, not at the next ping. A timeout shorter than the interval at which a client's
frames arrive is the fault knob Test 14 must catch. A close the peer does not
answer within ``CLOSE_TIMEOUT_S`` aborts the connection. Client ``{"type": "ping"}`` frames
are answered ``{"type": "pong"}``. Messages are de-duplicated by message_id.

Fault knobs (each counts the messages fanned out, every N-th one is hit): a frame to a
non-recipient (``ws_misroute_every``), a frame sent twice to each recipient socket
(``ws_duplicate_every``), a flipped ciphertext byte (``ws_corrupt_every``).

No permessage-deflate: a frame is mostly base64 ciphertext (deflate saves ~24 %), and
aiohttp compresses it again for every socket (~2.2 ms per 87 KB frame), which made the
fan-out the API's main CPU cost and let the send queues grow under 64 KiB messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from nightly_pipeline.testbed.api.membership import INVALIDATE_CHANNEL
from nightly_pipeline.testbed.api.storage import REDIS_ERRORS
from nightly_pipeline.testbed.metrics import Counter, Gauge

log = logging.getLogger(__name__)
DELIVER_CHANNEL = "messaging:deliver"
OVERLOAD_GRACE_S = 2.0
CLOSE_TIMEOUT_S = 2.0  # then the transport is aborted (a peer that does not read)

CONNECTS = Counter("ws_connect_total", "WebSocket connections accepted")
CLOSES = Counter("ws_close_total", "WebSocket connections closed", ["code"])
OVERLOADS = Counter("ws_overload_total", "Frames refused by a full per-socket send queue")
HEARTBEAT_TERMINATES = Counter(
    "ws_heartbeat_terminate_total", "Sockets terminated for a missing pong"
)
FRAMES_SENT = Counter("ws_frame_sent_total", "Frames sent to WebSocket clients")
OPEN = Gauge("ws_open_connections", "Open WebSocket connections")
QUEUED = Gauge("ws_send_queue_frames", "Frames waiting in the per-socket send queues")
DUPLICATES = Counter(
    "ws_duplicate_suppressed_total", "Deliveries of an already delivered message_id dropped"
)
_RECENT_IDS = 100_000  # message ids remembered for de-duplication


class Socket:
    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, user_id: int, queue_size: int
    ) -> None:
        self.ws = ws
        self.transport = request.transport
        self.close_code: int | None = None  # set when the server closes the socket
        self.user_id = user_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.overloaded_since: float | None = None
        self.last_seen = time.monotonic()
        self.closing = False


class Gateway:
    def __init__(self, services: Any) -> None:
        self.s = services
        self.cfg = services.cfg
        self.sockets: dict[int, set[Socket]] = {}
        self.subscribed = False
        # The ids as 128-bit ints in a set + deque: ~80 B each instead of ~170 B as strings
        # in an OrderedDict. Full from the start, of placeholders real ids push out one by
        # one: its ~8 MB are taken before any load, never as growth (filling at 500 msg/s
        # it added +12.7 % to the API's RSS in a 60 s smoke run, read as a leak).
        self.recent_order: deque[int | str] = deque(_placeholder_ids(_RECENT_IDS))
        self.recent: set[int | str] = set(self.recent_order)
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0  # messages fanned out (the ws_*_every fault knobs count them)
        self.misrouted_to = -1

    # ------------------------------------------------------------ connections

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        user_id = self.s.auth.principal(request).user_id  # 401 before the upgrade
        ws = web.WebSocketResponse(
            autoping=False, timeout=2.0, max_msg_size=64 * 1024, compress=False
        )
        await ws.prepare(request)
        CONNECTS.inc()
        OPEN.inc()
        sock = Socket(ws, request, user_id, self.cfg.ws_send_queue)
        self.sockets.setdefault(user_id, set()).add(sock)
        sender = asyncio.create_task(self._sender(sock), name=f"ws-send-{user_id}")
        heartbeat = asyncio.create_task(self._heartbeat(sock), name=f"ws-ping-{user_id}")
        try:
            async for msg in ws:
                sock.last_seen = time.monotonic()
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await self._on_client_frame(sock, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            peers = self.sockets.get(user_id, set())
            peers.discard(sock)
            if not peers:
                self.sockets.pop(user_id, None)
            for task in (sender, heartbeat):
                task.cancel()
            await asyncio.gather(sender, heartbeat, return_exceptions=True)
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            OPEN.dec()
            QUEUED.dec(sock.queue.qsize())  # never sent
            CLOSES.labels(code=str(sock.close_code or ws.close_code or 1006)).inc()
        return ws

    async def _on_client_frame(self, sock: Socket, data: str) -> None:
        with contextlib.suppress(ValueError):
            frame = json.loads(data)
            if isinstance(frame, dict) and frame.get("type") == "ping":
                self._enqueue(sock, '{"type":"pong"}')

    async def _sender(self, sock: Socket) -> None:
        limit = self.cfg.ws_send_queue
        try:
            while True:
                frame = await sock.queue.get()
                QUEUED.dec()
                await sock.ws.send_str(frame)
                FRAMES_SENT.inc()
                if sock.overloaded_since is not None and sock.queue.qsize() <= limit // 2:
                    sock.overloaded_since = None
        except (ConnectionError, RuntimeError):
            await self._close(sock, 1011, b"send failed")

    async def _heartbeat(self, sock: Socket) -> None:
        """Ping every ``ws_heartbeat_s``; terminate the socket once its client has been
        silent for ``heartbeat_timeout_s`` (woken at that deadline, not at the next ping,
        so a timeout shorter than the interval means what it says)."""
        interval, timeout = self.cfg.ws_heartbeat_s, self.cfg.heartbeat_timeout_s
        next_ping = time.monotonic() + interval
        while True:
            await asyncio.sleep(
                max(0.0, min(next_ping, sock.last_seen + timeout) - time.monotonic())
            )
            now = time.monotonic()
            if now - sock.last_seen >= timeout:
                HEARTBEAT_TERMINATES.inc()
                await self._close(sock, 1001, b"heartbeat timeout")
                return
            if now >= next_ping:
                next_ping = now + interval
                try:
                    await sock.ws.ping()
                except (ConnectionError, RuntimeError):
                    return

    async def _close(self, sock: Socket, code: int, reason: bytes) -> None:
        if sock.closing:
            return
        sock.closing = True
        sock.close_code = code
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await sock.ws.close(code=code, message=reason)
        except Exception:
            if sock.transport is not None:
                sock.transport.abort()

    async def close_all(self) -> None:
        socks = [s for peers in self.sockets.values() for s in peers]
        await asyncio.gather(
            *(self._close(s, 1001, b"server shutdown") for s in socks), return_exceptions=True
        )

    # ------------------------------------------------------------ delivery

    def _enqueue(self, sock: Socket, frame: str) -> None:
        try:
            sock.queue.put_nowait(frame)
            QUEUED.inc()
            return
        except asyncio.QueueFull:
            OVERLOADS.inc()
        now = time.monotonic()
        if sock.overloaded_since is None:
            sock.overloaded_since = now
        elif now - sock.overloaded_since >= OVERLOAD_GRACE_S and not sock.closing:
            self._spawn(self._close(sock, 1013, b"overloaded"))

    def deliver(self, payload: dict[str, Any]) -> int:
        """Queue the message for every socket of its recipients; return the socket count.
        A message_id seen recently is dropped: the consumer is at least once (a reclaimed
        entry is published again), the sockets get each message once."""
        message = payload["message"]
        message_id = str(message["message_id"])
        key = _id_key(message_id)
        if key in self.recent:
            DUPLICATES.inc()
            return 0
        self.recent.add(key)
        self.recent_order.append(key)
        if len(self.recent_order) > _RECENT_IDS:
            self.recent.discard(self.recent_order.popleft())
        self.delivered += 1
        n, cfg = self.delivered, self.cfg
        if _nth(n, cfg.ws_corrupt_every):
            message = _corrupted(message)
        frame = json.dumps({"type": "message", **message}, separators=(",", ":"))
        copies = 2 if _nth(n, cfg.ws_duplicate_every) else 1
        queued = 0
        for uid in payload["recipients"]:
            for sock in list(self.sockets.get(int(uid), ())):
                for _ in range(copies):
                    self._enqueue(sock, frame)
                    queued += 1
        if _nth(n, cfg.ws_misroute_every):
            queued += self._misroute(frame, {int(uid) for uid in payload["recipients"]})
        return queued

    def _misroute(self, frame: str, recipients: set[int]) -> int:
        """Fault knob ``ws_misroute_every``: the frame also goes to one socket of a user
        who is not a recipient (the next such user after the last one chosen)."""
        outsiders = sorted(uid for uid in self.sockets if uid not in recipients)
        if not outsiders:
            return 0
        uid = next((u for u in outsiders if u > self.misrouted_to), outsiders[0])
        self.misrouted_to = uid
        self._enqueue(next(iter(self.sockets[uid])), frame)
        return 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_pubsub(self, channel: str, data: bytes) -> None:
        if channel == INVALIDATE_CHANNEL:
            self.s.membership.on_invalidate(data.decode())
            return
        try:
            self.deliver(json.loads(data))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad frame on %s: %s", channel, exc)

    async def run_pubsub(self) -> None:
        """Subscribe to delivery and invalidation; resubscribe after Redis outages."""
        backoff = 0.1
        while True:
            pubsub = self.s.pubsub_redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(DELIVER_CHANNEL, INVALIDATE_CHANNEL)
                self.subscribed, backoff = True, 0.1
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None and msg["type"] == "message":
                        channel = msg["channel"]
                        if isinstance(channel, bytes):
                            channel = channel.decode()
                        self._on_pubsub(channel, msg["data"])
            except REDIS_ERRORS as exc:
                log.warning("pub/sub connection lost (%s); resubscribing", exc)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)


def _nth(n: int, every: int) -> bool:
    """Whether the n-th delivery is one a fault knob ``every`` (0: never) applies to."""
    return every > 0 and n % every == 0


def _corrupted(message: dict[str, Any]) -> dict[str, Any]:
    """Fault knob ``ws_corrupt_every``: the message with the first byte of its ciphertext
    flipped and its ``sha256`` unchanged (what a buggy buffer reuse would send)."""
    body = bytearray(base64.b64decode(message["ciphertext"])) or bytearray(1)
    body[0] ^= 0xFF
    return {**message, "ciphertext": base64.b64encode(bytes(body)).decode("ascii")}


def _placeholder_ids(count: int) -> range:
    """``count`` 128-bit ints no message id can be (a UUID's int is never negative), of a
    real id's size."""
    return range(-(2**128) + 1, -(2**128) + 1 + count)


def _id_key(message_id: str) -> int | str:
    """A message id as its UUID's int (compact); other ids as they are."""
    try:
        return uuid.UUID(message_id).int
    except ValueError:
        return message_id
