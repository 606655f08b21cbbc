"""Test 04, mixed WebSocket + HTTP load: persistent WebSockets (several per user, as a
user's devices) stay open for the whole run while messages are POSTed over HTTP; every
socket of every recipient must get every message once, 95 % within 500 ms of the POST,
and the server must close none of the sockets.

Ten users hold the 50 sockets, five devices each; each user owns one conversation with
the next two users, so a message reaches 3 users x 5 devices.
"""

from __future__ import annotations

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.messaging_load import MessagingKnobs, run_messaging_load
from nightly_pipeline.suite.spec import Check, TestSpec

KNOBS = MessagingKnobs(payload_bytes=1024, conversations=10, participants=3, pool=10, sockets=50)

SPEC = TestSpec(
    id="04",
    name="mixed_ws_http",
    duration_s=1200,
    rate=500,
    knobs=KNOBS,
    description="50 persistent WebSockets while messages are posted over HTTP",
    assets=("latency", "delivery", "websocket"),
    checks=(
        Check(
            "e2e_p95_under_500ms",
            on="delivery",
            metric="e2e_delivery_ms",
            expr="p(95)<500",
            severity="warn",
            plan="95% messages delivered < 500ms (HTTP POST -> WebSocket)",
            unit="ms",
        ),
        Check(
            "zero_ws_disconnects",
            on="websocket",
            metric="ws_disconnects",
            expr="count==0",
            severity="error",
            plan="Zero WebSocket disconnects",
            unit="count",
        ),
        Check(
            "zero_message_loss",
            on="delivery",
            metric="delivery_lost",
            expr="count==0",
            severity="error",
            plan="messaging_consumer_delivered_total == total messages sent",
            unit="count",
        ),
        Check(
            "each_message_delivered_once",
            on="delivery",
            metric="delivery_duplicated",
            expr="count==0",
            severity="error",
            plan="messaging_consumer_delivered_total == total messages sent",
            unit="count",
        ),
    ),
)


def scenario(ctx: ScenarioContext[MessagingKnobs]) -> LoadResult:
    return run_messaging_load(ctx)
