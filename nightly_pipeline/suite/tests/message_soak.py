"""Test 01, message soak: 1 KiB encrypted messages posted at a fixed rate, each verified
to reach every participant's WebSocket exactly once, intact, while the target's lags,
dead letters and memory are watched."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import ConstantArrivalRate, LoadResult, LoadTest, RunBounds, run_load
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.control import ControlPlane, Conversation
from nightly_pipeline.suite.delivery import Listener, Sent, judge_delivery
from nightly_pipeline.suite.runner import TestContext, register

CONVERSATIONS = 10
PARTICIPANTS = 3
TOKEN_REFRESH_S = 600.0
"""Log in again before the platform's 15-minute access tokens expire."""
DRAIN_S = 15.0
"""After the load, how long deliveries may still arrive before the missing count as lost."""


@dataclass
class PostMessages:
    """One POST /v1/messages per iteration, round-robin over the conversations."""

    conversations: list[Conversation]
    tokens: dict[str, str]
    payload_bytes: int
    password: str
    sent: dict[str, Sent] = field(default_factory=dict)
    _next: itertools.count = field(default_factory=itertools.count)
    _token_at: float = field(default_factory=time.perf_counter)

    async def iteration(self, vu: Vu) -> None:
        n = next(self._next)
        conversation = self.conversations[n % len(self.conversations)]
        if vu.now - self._token_at > TOKEN_REFRESH_S:
            await self._refresh(vu)
        payload = os.urandom(self.payload_bytes)
        digest = hashlib.sha256(payload).hexdigest()
        body = b'{"conversation_id":"%s","client_msg_id":"%s","ciphertext":"%s","sha256":"%s"}' % (
            conversation.id.encode(),
            uuid.uuid4().hex.encode(),
            base64.b64encode(payload),
            digest.encode(),
        )
        started = vu.now
        response = await vu.http.post(
            "/v1/messages",
            body,
            headers=[
                ("Authorization", f"Bearer {self.tokens[conversation.owner]}"),
                ("Content-Type", "application/json"),
            ],
            tags={"name": "post_message"},
        )
        if response.status == 202:
            self.sent[response.json()["message_id"]] = Sent(conversation.id, digest, started)

    async def _refresh(self, vu: Vu) -> None:
        self._token_at = vu.now
        for user in list(self.tokens):
            body = b'{"username":"%s","password":"%s"}' % (user.encode(), self.password.encode())
            response = await vu.http.post(
                "/v1/auth/login",
                body,
                headers=[("Content-Type", "application/json")],
                tags={"name": "login"},
            )
            if response.status == 200:
                self.tokens[user] = response.json()["access_token"]


@register("01")
class MessageSoak:
    def execute(self, ctx: TestContext) -> LoadResult:
        target = ctx.target
        users = list(target.users)
        if len(users) < PARTICIPANTS:
            raise ValueError(f"{target.name}: Test 01 needs {PARTICIPANTS} users, has {len(users)}")
        with ControlPlane(target) as control:
            tokens = {u: control.login(u) for u in users[: CONVERSATIONS + PARTICIPANTS]}
            conversations = []
            for n in range(CONVERSATIONS):
                owner = users[n % len(tokens)]
                others = [users[(n + k) % len(tokens)] for k in range(1, PARTICIPANTS)]
                conversations.append(control.create_conversation(tokens[owner], owner, others))
        recipients = {c.id: c.participants for c in conversations}
        listening = {u for c in conversations for u in c.participants}
        scenario = PostMessages(
            conversations,
            dict(tokens),
            int(ctx.spec.extra.get("payload_bytes", 1024)),
            target.password,
        )
        ctx.progress(f"{ctx.spec.key}: {ctx.rate:g} msg/s for {ctx.duration_s:g} s")
        with Listener(target.ws_url, {u: tokens[u] for u in listening}) as listener:
            result = run_load(
                LoadTest(
                    ConstantArrivalRate(
                        rate=ctx.rate, bounds=RunBounds(ctx.duration_s), max_vus=1000
                    ),
                    scenario,
                    target.base_url,
                    allow_hosts=target.allow_hosts,
                )
            )
            expected = {m: recipients[s.conversation] for m, s in scenario.sent.items()}
            total = sum(len(r) for r in expected.values())
            deadline = time.monotonic() + DRAIN_S
            while listener.delivered(expected) < total and time.monotonic() < deadline:
                time.sleep(0.1)
        verdict = judge_delivery(scenario.sent, recipients, listener.received)
        rec, at = result.recorder, time.perf_counter()
        rec.counter("delivery_expected", at, value=float(verdict.expected))
        rec.counter("delivery_lost", at, value=float(verdict.lost))
        rec.counter("delivery_duplicated", at, value=float(verdict.duplicated))
        rec.counter("delivery_corrupted", at, value=float(verdict.corrupted))
        rec.counter("ws_disconnects", at, value=float(listener.ws_disconnects))
        for ms in verdict.e2e_ms:
            rec.trend("e2e_delivery_ms", ms, at)
        return result
