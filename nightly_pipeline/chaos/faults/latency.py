"""``latency``: delays each chunk to ``arrival + latency_ms ± jitter_ms``.

The delay counts from when the chunk was read, not from when the previous chunk was
written, so a steady stream keeps its throughput and only gains latency.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.faults.base import Chunk, Fault, LinkInfo, register


@register
class Latency(Fault):
    type_name = "latency"

    def __init__(self, latency_ms: float, jitter_ms: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Fault:
        unknown = sorted(set(params) - {"latency_ms", "jitter_ms"})
        errors = [f"unknown params {unknown}"] if unknown else []
        try:
            latency = float(params.get("latency_ms", 0.0))
            jitter = float(params.get("jitter_ms", 0.0))
        except (TypeError, ValueError):
            raise ValueError("latency_ms and jitter_ms must be numbers") from None
        if latency < 0 or jitter < 0:
            errors.append("latency_ms and jitter_ms must be >= 0")
        if jitter > latency:
            errors.append("jitter_ms must not exceed latency_ms")
        if errors:
            raise ValueError(f"fault 'latency': {'; '.join(errors)}")
        return cls(latency, jitter)

    async def pipe(self, chunk: Chunk, link: LinkInfo) -> bytes:
        delay_ms = self.latency_ms + random.uniform(-self.jitter_ms, self.jitter_ms)
        loop = asyncio.get_running_loop()
        wait = chunk.arrived + delay_ms / 1000.0 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        return chunk.data

    def params(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms}
