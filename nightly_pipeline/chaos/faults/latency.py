"""``latency``: each chunk leaves ``latency`` ± ``jitter`` ms after it arrived.

The delay counts from when the chunk was read, not from when the previous chunk was
written, so a steady stream keeps its throughput and only gains latency (Toxiproxy's
semantics). Removed while live, the chunk it delays goes on at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, Stub, register


@register
@dataclass(frozen=True)
class Latency(Fault):
    type_name: ClassVar[str] = "latency"
    latency: float = 0  # ms
    jitter: float = 0  # ms; the delay is drawn from [latency - jitter, latency + jitter]

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        delay_ms = self.latency + (random.uniform(-self.jitter, self.jitter) if self.jitter else 0)
        wait = chunk.arrived + delay_ms / 1000.0 - stub.now()
        if wait > 0 and await stub.wait(wait):
            # A later latency toxic counts from here, so chained delays add up.
            chunk = Chunk(chunk.data, stub.now())
        await emit(chunk)
