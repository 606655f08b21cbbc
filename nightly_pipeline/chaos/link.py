"""One proxied TCP connection: two directions, each a reader task feeding a writer task
through a small bounded queue, with the proxy's faults applied in the writer.

Reading and writing are separate so a delaying fault counts its delay from when a chunk
was read (throughput is kept), and the bounded queue carries back-pressure to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Literal

from nightly_pipeline.chaos.faults import Chunk, FaultSlot, LinkAbort, LinkInfo

Side = Literal["upstream", "downstream"]
_QUEUE_CHUNKS = 8
_EOF = Chunk(b"", 0.0)


class Link:
    """Client ⇄ upstream. ``upstream`` is client → server, ``downstream`` server → client."""

    def __init__(
        self,
        link_id: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        faults: Callable[[], Sequence[FaultSlot]],
        chunk_size: int,
    ) -> None:
        self.link_id = link_id
        self._client = client
        self._upstream = upstream
        self._faults = faults
        self._chunk_size = chunk_size
        peer = client[1].get_extra_info("peername")
        self.client_addr = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.bytes = {"upstream": 0, "downstream": 0}
        self.last_activity = asyncio.get_running_loop().time()
        self._draws: dict[tuple[str, int, str], bool] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()

    async def run(self) -> None:
        """Pipe both directions until both end or the link is closed."""
        name = f"link-{self.link_id}"
        directions = (
            ("upstream", self._client[0], self._upstream[1]),
            ("downstream", self._upstream[0], self._client[1]),
        )
        for side, src, dst in directions:
            queue: asyncio.Queue[Chunk] = asyncio.Queue(_QUEUE_CHUNKS)
            self._tasks.append(asyncio.create_task(self._read(src, queue), name=f"{name}-r{side}"))
            self._tasks.append(
                asyncio.create_task(self._write(side, queue, dst), name=f"{name}-w{side}")
            )
        clean = False
        try:
            await asyncio.gather(*self._tasks)
            clean = True
        except (LinkAbort, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            if not self._closed.is_set():
                raise
        finally:
            self.close(abort=not clean)
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self, *, abort: bool) -> None:
        """Close both sockets; ``abort`` sends RST instead of FIN. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        for task in self._tasks:
            task.cancel()
        for _, writer in (self._client, self._upstream):
            if abort:
                writer.transport.abort()
            else:
                writer.close()

    async def _read(self, src: asyncio.StreamReader, queue: asyncio.Queue[Chunk]) -> None:
        loop = asyncio.get_running_loop()
        while data := await src.read(self._chunk_size):
            self.last_activity = loop.time()
            await queue.put(Chunk(data, self.last_activity))
        await queue.put(_EOF)

    async def _write(
        self, side: Side, queue: asyncio.Queue[Chunk], dst: asyncio.StreamWriter
    ) -> None:
        info = LinkInfo(self.link_id, side, self.client_addr)
        while (chunk := await queue.get()) is not _EOF:
            data = chunk.data
            for slot in self._faults():
                if slot.applies_to(side) and self._affected(slot, side) and data:
                    data = await slot.fault.pipe(Chunk(data, chunk.arrived), info)
            if data:
                dst.write(data)
                self.bytes[side] += len(data)
                await dst.drain()
            self.last_activity = asyncio.get_running_loop().time()
        if dst.can_write_eof():
            with contextlib.suppress(OSError):
                dst.write_eof()

    def _affected(self, slot: FaultSlot, side: str) -> bool:
        key = (slot.name, id(slot), side)
        if key not in self._draws:
            self._draws[key] = slot.draw()
        return self._draws[key]
