"""``slow_close``: the stream's close (FIN) is passed on ``delay`` ms late; data is not.

Removed while a close is delayed, the close goes on at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, Stub, register


@register
@dataclass(frozen=True)
class SlowClose(Fault):
    type_name: ClassVar[str] = "slow_close"
    delay: float = 0  # ms

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        await emit(chunk)

    async def eof(self, stub: Stub) -> None:
        await stub.wait(self.delay / 1000.0)
