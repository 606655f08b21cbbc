"""``timeout``: stops all data on the stream; with ``timeout`` > 0 the link is closed once
no data has arrived for ``timeout`` ms (Toxiproxy restarts its timer on every chunk).

Unlike Toxiproxy, which drops what it stops, the data is held (with back-pressure to the
sender) and delivered in order when the toxic is removed: removing a toxic never loses data.
A link closed by the timeout discards what was held, as the peer would never see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, Stub, register


@register
@dataclass(frozen=True)
class Timeout(Fault):
    type_name: ClassVar[str] = "timeout"
    timeout: float = 0  # ms; 0: never close, hold until removed

    def start(self, stub: Stub) -> None:
        if self.timeout > 0:
            stub.later(self.timeout / 1000.0, lambda: self._expire(stub))

    def _expire(self, stub: Stub) -> None:
        due = max(stub.started_at, stub.last_arrival()) + self.timeout / 1000.0
        if due - stub.now() > 0.001:  # data arrived meanwhile: Toxiproxy's timer restarts
            stub.later(due - stub.now(), lambda: self._expire(stub))
        else:
            stub.close_link()

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        while stub.active:  # until removed (or updated to spare this link), or closed
            await stub.wait(None)
        await emit(chunk)
