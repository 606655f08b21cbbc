"""``bandwidth``: at most ``rate`` KB/s (1 KB = 1000 bytes, as Toxiproxy counts).

Each chunk owes ``len / rate`` of time; a chunk larger than 100 ms worth is sent in 100 ms
slices, so a slow link trickles instead of stalling then bursting. The time owed carries
over from chunk to chunk (per link), idle time earns no credit. Removed while live, what
it holds goes on at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, Stub, register

_SLICE_S = 0.1


@register
@dataclass(frozen=True)
class Bandwidth(Fault):
    type_name: ClassVar[str] = "bandwidth"
    rate: int = 0  # KB/s

    def validate(self) -> list[str]:
        # Toxiproxy would stall forever at 0; "no limit" is removing the toxic.
        return [] if self.rate >= 1 else ["rate must be >= 1 KB/s"]

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        per_slice = self.rate * 100  # bytes per 100 ms
        data = chunk.data
        owed = stub.state.get("owed", 0.0) + len(data) / (self.rate * 1000.0)
        while len(data) > per_slice:
            if not await stub.wait(_SLICE_S):
                stub.state["owed"] = 0.0
                await emit(Chunk(data, chunk.arrived))
                return
            await emit(Chunk(data[:per_slice], chunk.arrived))
            data = data[per_slice:]
            owed -= _SLICE_S
        started = stub.now()
        if not await stub.wait(owed):
            stub.state["owed"] = 0.0
            await emit(Chunk(data, chunk.arrived))
            return
        stub.state["owed"] = owed - (stub.now() - started)  # timer overshoot is paid back
        await emit(Chunk(data, chunk.arrived))
