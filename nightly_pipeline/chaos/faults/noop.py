"""``noop``: forwards every chunk unchanged — the control toxic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nightly_pipeline.chaos.faults.base import Chunk, Emit, Fault, Stub, register


@register
@dataclass(frozen=True)
class Noop(Fault):
    type_name: ClassVar[str] = "noop"

    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        await emit(chunk)
