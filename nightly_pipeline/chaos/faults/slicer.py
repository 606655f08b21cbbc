"""``slicer``: each chunk is cut into slices of about ``average_size`` ± ``size_variation``
bytes, written one by one ``delay`` µs apart, as a real network splits a write into
segments. Slicing halves a chunk (± variation) until each piece is at most
``average_size + size_variation`` (Toxiproxy's algorithm). Removed while live, the rest of
the chunk goes on at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, Stub, register


@register
@dataclass(frozen=True)
class Slicer(Fault):
    type_name: ClassVar[str] = "slicer"
    average_size: int = 0  # bytes
    size_variation: int = 0  # bytes, below average_size
    delay: float = 0  # µs between slices

    def validate(self) -> list[str]:
        errors = []
        if self.average_size < 1:
            errors.append("average_size must be >= 1")
        if self.size_variation >= max(self.average_size, 1):
            errors.append("size_variation must be smaller than average_size")
        return errors

    def slices(self, size: int, rng: random.Random | None = None) -> list[tuple[int, int]]:
        """``(start, end)`` offsets covering ``size`` bytes, in order."""
        rng = rng or random.Random()
        avg, var = self.average_size, self.size_variation
        pieces: list[tuple[int, int]] = []
        todo = [(0, size)] if size else []
        while todo:
            start, end = todo.pop()
            if (end - start) - avg <= var:
                pieces.append((start, end))
                continue
            mid = start + (end - start) // 2
            if var > 0:
                mid += rng.randrange(2 * var) - var
            mid = min(max(mid, start + 1), end - 1)
            todo += [(mid, end), (start, mid)]
        return pieces

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        data = chunk.data
        for start, end in self.slices(len(data)):
            await emit(Chunk(data[start:end], chunk.arrived))
            if not await stub.wait(self.delay / 1e6):
                if end < len(data):
                    await emit(Chunk(data[end:], chunk.arrived))
                return
