"""Test 04, mixed WebSocket + HTTP load: persistent WebSockets (several per user, as a
user's devices) stay open for the whole run while messages are POSTed over HTTP; every
socket of every recipient must get every message once, 95 % within 500 ms of the POST,
and the server must close none of the sockets."""

from __future__ import annotations

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.messaging_load import MessagingLoad, run_messaging_load
from nightly_pipeline.suite.runner import TestContext, register

USERS = 10
"""Users holding the sockets: 50 sockets are 5 devices per user. Each user owns one
conversation with the next two users, so a message reaches 3 users x 5 devices."""
PARTICIPANTS = 3
PAYLOAD_BYTES = 1024


@register("04")
class MixedWsHttp:
    def execute(self, ctx: TestContext) -> LoadResult:
        load = MessagingLoad(
            payload_bytes=int(ctx.spec.extra.get("payload_bytes", PAYLOAD_BYTES)),
            conversations=USERS,
            participants=PARTICIPANTS,
            pool=USERS,
            sockets=int(ctx.spec.extra.get("websockets", 50)),
        )
        return run_messaging_load(ctx, load)
