"""``noop``: forwards every chunk unchanged — the control fault."""

from __future__ import annotations

from nightly_pipeline.chaos.faults.base import Chunk, Fault, LinkInfo, register


@register
class Noop(Fault):
    type_name = "noop"

    async def pipe(self, chunk: Chunk, link: LinkInfo) -> bytes:
        return chunk.data
