"""The delivery listener's own process: one WebSocket per label, one receipt per frame.

Run as ``python -m nightly_pipeline.suite.ws_listen`` by ``delivery.Listener``. It is a
process of its own because checking 300 frames/s of ~87 KB (JSON, base64, sha256) on a
thread of the load generator shared its GIL: the sockets went unread for seconds, the
backlog piled up in the platform's send buffers and its RSS grew (Test 05).

Several of these processes may share one listener's sockets (``delivery.Listener``'s
``processes``: Test 12's 1,000 sockets). Sockets connect without permessage-deflate
(~14 KiB a socket instead of ~50 KiB with websockets 17) and, when the parent asks for
pings, without websockets' own keepalive (the test's heartbeat is the only one).

Protocol (JSON lines). stdin: one line ``{"ws_url": .., "tokens": {label: token},
"ping_every_s": null or seconds}``, then EOF means stop. stdout: ``["ready", RSS before,
RSS after connecting (bytes)]`` once every socket is open, or ``["error", why]``;
``["m", label, message_id, sha256 of the ciphertext, it matches the frame's sha256, at,
conversation_id]`` per message frame
(``at``: ``time.perf_counter()``, CLOCK_MONOTONIC, the same clock as the parent's);
``["p", label, round trip ms]`` per answered ping, ``["pm", label]`` per ping with no
pong within the interval; ``["d", label]`` when the server ended a socket; ``["end"]``
last.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import signal
import sys
import threading
import time
from collections.abc import AsyncIterable, Callable, Mapping
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from nightly_pipeline.suite.file_limits import FILES_TO_SPARE, raise_soft_limit

Emit = Callable[[list[Any]], None]
FLUSH_S = 0.02  # receipts reach the parent within this


def receipt_of(label: str, frame: str | bytes, at: float) -> list[Any] | None:
    """The receipt of one frame; None for frames that are not messages (pongs)."""
    data = json.loads(frame)
    if data.get("type") != "message":
        return None
    digest = hashlib.sha256(base64.b64decode(data["ciphertext"])).hexdigest()
    matches = digest == data.get("sha256")
    return ["m", label, data["message_id"], digest, matches, at, data.get("conversation_id")]


async def read_socket(
    label: str, ws: AsyncIterable[str | bytes], emit: Emit, stopping: asyncio.Event
) -> None:
    """Emit a receipt per frame; ``["d", label]`` if the server ends the socket."""
    try:
        async for frame in ws:
            receipt = receipt_of(label, frame, time.perf_counter())
            if receipt is not None:
                emit(receipt)
    except ConnectionClosedError:  # 1006 (no close frame), 1011, 1013 overload, ...
        pass
    if not stopping.is_set():  # the server ended it, cleanly or not
        emit(["d", label])


async def ping_socket(label: str, ws: ClientConnection, every_s: float, emit: Emit) -> None:
    """A ping every ``every_s``; its round trip, or a miss when no pong came within the
    interval. Ends when the socket does."""
    while True:
        await asyncio.sleep(every_s)
        try:
            pong = await ws.ping()
            rtt_s = await asyncio.wait_for(pong, every_s)
        except TimeoutError:
            emit(["pm", label])
            continue
        except ConnectionClosed:
            return
        emit(["p", label, rtt_s * 1000.0])


async def listen(
    ws_url: str,
    tokens: Mapping[str, str],
    emit: Emit,
    stop: asyncio.Event,
    ping_every_s: float | None = None,
) -> None:
    sockets: dict[str, ClientConnection] = {}
    keepalive = {"ping_interval": None} if ping_every_s else {}
    rss_before = psutil.Process().memory_info().rss
    try:
        for label, token in tokens.items():
            sockets[label] = await connect(
                ws_url,
                additional_headers={"Authorization": f"Bearer {token}"},
                proxy=None,
                compression=None,
                **keepalive,
            )
        emit(["ready", rss_before, psutil.Process().memory_info().rss])
        readers = [
            asyncio.create_task(read_socket(lb, ws, emit, stop)) for lb, ws in sockets.items()
        ]
        if ping_every_s:
            readers += [
                asyncio.create_task(ping_socket(lb, ws, ping_every_s, emit))
                for lb, ws in sockets.items()
            ]
        await stop.wait()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


def raise_file_limit(sockets: int) -> None:
    """Open files for ``sockets`` and some to spare: the soft limit raised up to the hard
    one if needed; ``file_limits.FileLimitError`` when even that is too low."""
    raise_soft_limit(sockets + FILES_TO_SPARE)


async def _flush(out: Any) -> None:
    while True:
        await asyncio.sleep(FLUSH_S)
        out.flush()


async def _main(config: Mapping[str, Any], out: Any) -> None:
    def emit(record: list[Any]) -> None:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def watch_stdin() -> None:  # EOF: the parent is done (or gone)
        sys.stdin.read()
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
    flusher = asyncio.create_task(_flush(out))
    try:
        raise_file_limit(len(config["tokens"]))
        await listen(config["ws_url"], config["tokens"], emit, stop, config.get("ping_every_s"))
    except Exception as exc:  # reported to the parent, which raises it
        emit(["error", f"{type(exc).__name__}: {exc}"])
    finally:
        flusher.cancel()
        emit(["end"])
        out.flush()


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent decides when to stop (stdin EOF),
    # after the load's graceful stop, so the last deliveries are still counted.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.stdin.readline())
    asyncio.run(_main(config, sys.stdout))


if __name__ == "__main__":
    main()
