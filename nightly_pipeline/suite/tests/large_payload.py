"""Test 05, large payloads: 64 KiB messages at a fixed rate. Every frame's ciphertext
must hash to the sha256 it was sent with, the platform must reject none
(``messaging_payload_rejects_total``), drop no frame for backpressure
(``ws_overload_total``), and its processes' memory must not keep growing."""

from __future__ import annotations

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.messaging_load import MessagingLoad, run_messaging_load
from nightly_pipeline.suite.runner import TestContext, register

KIB = 1024


@register("05")
class LargePayload:
    def execute(self, ctx: TestContext) -> LoadResult:
        load = MessagingLoad(payload_bytes=int(ctx.spec.extra.get("payload_bytes", 64 * KIB)))
        return run_messaging_load(ctx, load)
