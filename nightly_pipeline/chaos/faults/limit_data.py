"""``limit_data``: the link is closed (FIN) once ``bytes`` bytes have gone through on the
stream; the chunk crossing the limit is cut at it. The count is per link and stream and
lasts as long as the toxic (an update keeps it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, LinkAbort, Stub, register


@register
@dataclass(frozen=True)
class LimitData(Fault):
    type_name: ClassVar[str] = "limit_data"
    bytes: int = 0

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        sent = stub.state.get("sent", 0)
        data = chunk.data[: max(self.bytes - sent, 0)]
        if data:
            stub.state["sent"] = sent = sent + len(data)
            await emit(Chunk(data, chunk.arrived))
        if sent >= self.bytes:
            raise LinkAbort("limit_data")
