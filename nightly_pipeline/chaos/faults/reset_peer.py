"""``reset_peer``: ``timeout`` ms after the first data (or close) reaches it on the stream,
the link is reset: both sockets are closed with SO_LINGER 0, so each peer gets a TCP RST
(``ConnectionResetError``). The data that triggered it is dropped, as in Toxiproxy; removed
before the reset fires, it passes that data on instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, LinkAbort, Stub, register


@register
@dataclass(frozen=True)
class ResetPeer(Fault):
    type_name: ClassVar[str] = "reset_peer"
    timeout: float = 0  # ms

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        if await stub.wait(self.timeout / 1000.0):
            raise LinkAbort("reset_peer", reset=True)
        await emit(chunk)

    async def eof(self, stub: Stub) -> None:
        if await stub.wait(self.timeout / 1000.0):
            raise LinkAbort("reset_peer", reset=True)
