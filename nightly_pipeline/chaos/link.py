"""One proxied TCP connection: two streams, each a reader task feeding a writer task
through a small bounded queue, with the proxy's toxics applied in the writer.

Reading and writing are separate so a delaying toxic counts its delay from when a chunk
was read (throughput is kept), and the bounded queue carries back-pressure to the socket.
Each stream keeps one :class:`~nightly_pipeline.chaos.faults.Stub` per toxic, in the
proxy's order; a chunk goes through them as a chain (a toxic's ``emit`` is the rest of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
from collections.abc import Iterable
from typing import Literal

from nightly_pipeline.chaos.faults import STREAMS, Chunk, FaultSlot, LinkAbort, LinkInfo, Stub
from nightly_pipeline.chaos.faults.base import Emit, Stream

CloseHow = Literal["fin", "abort", "reset"]
_QUEUE_CHUNKS = 8
_EOF = Chunk(b"", 0.0)
_LINGER_ZERO = struct.pack("ii", 1, 0)


class Link:
    """Client ⇄ upstream. ``upstream`` is client → server, ``downstream`` server → client."""

    def __init__(
        self,
        link_id: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        faults: Iterable[FaultSlot],
        chunk_size: int,
    ) -> None:
        self.link_id = link_id
        self._client = client
        self._upstream = upstream
        self._chunk_size = chunk_size
        peer = client[1].get_extra_info("peername")
        self.client_addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        for _, writer in (client, upstream):
            sock = writer.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bytes = {"upstream": 0, "downstream": 0}
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self._last_read = {"upstream": 0.0, "downstream": 0.0}
        self._stubs: dict[Stream, dict[str, Stub]] = {side: {} for side in STREAMS}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()
        for slot in faults:
            self.attach(slot)

    # ------------------------------------------------------------ toxics (by the proxy)

    def attach(self, slot: FaultSlot) -> None:
        """A toxic now applies to this link's ``slot.stream`` (appended to its chain)."""
        side = slot.stream
        info = LinkInfo(self.link_id, side, self.client_addr)
        stub = Stub(slot, info, self._close_from_toxic, functools.partial(self._read_at, side))
        self._stubs[side][slot.name] = stub
        stub.begin()

    def update(self, slot: FaultSlot) -> None:
        """New attributes/toxicity for a toxic, in place: its state is kept, toxicity is
        drawn again, timers restart, chunks it delays go on (Toxiproxy's interrupt)."""
        stub = self._stubs[slot.stream].get(slot.name)
        if stub is not None:
            stub.begin(slot)

    def detach(self, slot: FaultSlot) -> None:
        """The toxic is gone: what it holds goes on, later chunks skip it."""
        stub = self._stubs[slot.stream].pop(slot.name, None)
        if stub is not None:
            stub.remove()

    def _read_at(self, side: Stream) -> float:
        return self._last_read[side]

    def _close_from_toxic(self, reset: bool) -> None:
        self.close("reset" if reset else "fin")

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Pipe both streams until both end or the link is closed."""
        name = f"link-{self.link_id}"
        streams: tuple[tuple[Stream, asyncio.StreamReader, asyncio.StreamWriter], ...] = (
            ("upstream", self._client[0], self._upstream[1]),
            ("downstream", self._upstream[0], self._client[1]),
        )
        for side, src, dst in streams:
            queue: asyncio.Queue[Chunk] = asyncio.Queue(_QUEUE_CHUNKS)
            self._tasks.append(
                asyncio.create_task(self._read(side, src, queue), name=f"{name}-r{side}")
            )
            self._tasks.append(
                asyncio.create_task(self._write(side, queue, dst), name=f"{name}-w{side}")
            )
        how: CloseHow = "abort"
        try:
            await asyncio.gather(*self._tasks)
            how = "fin"
        except LinkAbort as exc:
            how = "reset" if exc.reset else "fin"
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            if not self._closed.is_set():
                raise
        finally:
            self.close(how)
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for stubs in self._stubs.values():
                for stub in stubs.values():
                    stub.remove()

    def close(self, how: CloseHow = "fin") -> None:
        """Close both sockets. ``fin``: after flushing what was written; ``abort``: at once;
        ``reset``: at once with SO_LINGER 0, so each peer gets a TCP RST. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        for task in self._tasks:
            task.cancel()
        for _, writer in (self._client, self._upstream):
            if how == "reset":
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
                writer.transport.abort()
            elif how == "abort":
                writer.transport.abort()
            else:
                writer.close()

    # ------------------------------------------------------------ streams

    async def _read(
        self, side: Stream, src: asyncio.StreamReader, queue: asyncio.Queue[Chunk]
    ) -> None:
        loop = asyncio.get_running_loop()
        while data := await src.read(self._chunk_size):
            self.last_activity = self._last_read[side] = loop.time()
            await queue.put(Chunk(data, self.last_activity))
        await queue.put(_EOF)

    async def _write(
        self, side: Stream, queue: asyncio.Queue[Chunk], dst: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()

        async def out(chunk: Chunk) -> None:
            if chunk.data and not self._closed.is_set():
                dst.write(chunk.data)
                self.bytes[side] += len(chunk.data)
                await dst.drain()
            self.last_activity = loop.time()

        while (chunk := await queue.get()) is not _EOF:
            await _through(list(self._stubs[side].values()), 0, out, chunk)
        for stub in list(self._stubs[side].values()):
            if stub.active:
                await stub.fault.eof(stub)
        if dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()


async def _through(chain: list[Stub], index: int, out: Emit, chunk: Chunk) -> None:
    """Send ``chunk`` through ``chain[index:]``, then ``out``."""
    while index < len(chain) and not chain[index].active:
        index += 1
    if index == len(chain):
        await out(chunk)
        return
    stub = chain[index]
    await stub.fault.pipe(chunk, stub, functools.partial(_through, chain, index + 1, out))
