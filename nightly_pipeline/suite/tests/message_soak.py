"""Test 01, message soak: 1 KiB encrypted messages posted at a fixed rate, each verified
to reach every participant's WebSocket exactly once, intact, while the target's lags,
dead letters and memory are watched."""

from __future__ import annotations

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.messaging_load import MessagingLoad, run_messaging_load
from nightly_pipeline.suite.runner import TestContext, register

CONVERSATIONS = 10
PARTICIPANTS = 3


@register("01")
class MessageSoak:
    def execute(self, ctx: TestContext) -> LoadResult:
        load = MessagingLoad(
            payload_bytes=int(ctx.spec.extra.get("payload_bytes", 1024)),
            conversations=CONVERSATIONS,
            participants=PARTICIPANTS,
            pool=CONVERSATIONS + PARTICIPANTS,
        )
        return run_messaging_load(ctx, load)
