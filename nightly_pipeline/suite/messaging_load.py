"""Messaging load shared by the tests that post messages over HTTP and watch them arrive
over WebSockets (01 message_soak, 04 mixed_ws_http, 05 large_payload); each of them sets
its own ``MessagingKnobs``.

One run: log users in and create conversations (a ring over a pool of users), open the
listening sockets (one or several per participant: a user's devices), POST
/v1/messages at the test's rate, let deliveries drain, and record delivery by message id
per socket (``delivery_*``, ``e2e_delivery_ms``, ``ws_disconnects``) into the result.
What was sent and what arrived go through a ``ledger.DeliveryLedger``, which settles each
message once all its sockets have it, so a 30-minute soak holds what is in flight, not
every message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import SecondSnapshot
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.client import TOKEN_REFRESH_S, Conversation, PlatformClient
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.delivery import DeliveryVerdict, Listener, Sent
from nightly_pipeline.suite.ledger import DeliveryLedger
from nightly_pipeline.suite.progress import TestProgress
from nightly_pipeline.suite.target import Target


@dataclass(frozen=True)
class MessagingKnobs:
    """A messaging test's knobs: the payload, and how it lays out its users,
    conversations and listening sockets.

    Conversation ``n`` belongs to user ``n`` of the pool, with the next
    ``participants - 1`` users of the pool (a ring). ``sockets`` listening WebSockets are
    spread round-robin over the participants, several per user when there are more sockets
    than users (``None``: one per participant).
    """

    payload_bytes: int
    conversations: int = 10
    participants: int = 3  # per conversation, the owner included
    pool: int = 13  # users logged in (capped by the target's users)
    sockets: int | None = None
    drain_s: float = 15.0  # after the load, how long deliveries may still arrive
    drain_stall_s: float = 10.0  # ... unless none arrived for this long (lost, not late)
    max_vus: int = 1000
    listener_processes: int = 1  # the sockets are dealt over this many listener processes
    settle_after_s: float = 10.0  # a message complete this long after its send is settled

    def errors(self, users: int) -> list[str]:
        problems = []
        if self.participants < 1 or self.conversations < 1:
            problems.append("conversations and participants must be >= 1")
        if users < self.participants:
            problems.append(f"needs {self.participants} users, the target has {users}")
        if self.sockets is not None and self.sockets < 1:
            problems.append(f"sockets must be >= 1, got {self.sockets}")
        if self.listener_processes < 1:
            problems.append(f"listener_processes must be >= 1, got {self.listener_processes}")
        if self.settle_after_s < 0:
            problems.append(f"settle_after_s must be >= 0, got {self.settle_after_s}")
        return problems


def layout(users: Sequence[str], load: MessagingKnobs) -> list[tuple[str, tuple[str, ...]]]:
    """(owner, others) of each conversation, a ring over the first ``pool`` users."""
    pool = list(users[: min(load.pool, len(users))])
    return [
        (pool[n % len(pool)], tuple(pool[(n + k) % len(pool)] for k in range(1, load.participants)))
        for n in range(load.conversations)
    ]


def socket_labels(participants: Sequence[str], sockets: int | None) -> dict[str, str]:
    """Listening socket label (``user#device``) -> user, round-robin over ``participants``."""
    count = len(participants) if sockets is None else sockets
    return {
        f"{participants[i % len(participants)]}#{i // len(participants)}": participants[
            i % len(participants)
        ]
        for i in range(count)
    }


def recipients_by_socket(
    conversations: Sequence[Conversation], sockets: Mapping[str, str]
) -> dict[str, tuple[str, ...]]:
    """Conversation id -> the labels of every socket that must receive its messages."""
    return {
        c.id: tuple(label for label, user in sockets.items() if user in c.participants)
        for c in conversations
    }


def message_body(conversation_id: str, payload: bytes) -> tuple[bytes, str]:
    """The JSON of ``POST /v1/messages`` for ``payload`` (a fresh client_msg_id), built
    without a JSON encoder on the hot path; (body, sha256 of the payload)."""
    digest = hashlib.sha256(payload).hexdigest()
    body = b'{"conversation_id":"%s","client_msg_id":"%s","ciphertext":"%s","sha256":"%s"}' % (
        conversation_id.encode(),
        uuid.uuid4().hex.encode(),
        base64.b64encode(payload),
        digest.encode(),
    )
    return body, digest


@dataclass
class PostMessages:
    """One POST /v1/messages per iteration, round-robin over the conversations; each
    accepted one goes to the ledger."""

    conversations: list[Conversation]
    tokens: dict[str, str]
    payload_bytes: int
    password: str
    ledger: DeliveryLedger
    fanout: Mapping[str, int] = field(default_factory=dict)  # conversation -> its sockets
    expected_pairs: int = 0  # (message, socket) deliveries owed for the 202s so far
    _next: itertools.count = field(default_factory=itertools.count)
    _token_at: float = field(default_factory=time.perf_counter)

    async def iteration(self, vu: Vu) -> None:
        n = next(self._next)
        conversation = self.conversations[n % len(self.conversations)]
        if vu.now - self._token_at > TOKEN_REFRESH_S:
            await self._refresh(vu)
        body, digest = message_body(conversation.id, os.urandom(self.payload_bytes))
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
            self.ledger.sent(response.json()["message_id"], Sent(conversation.id, digest, started))
            self.expected_pairs += self.fanout.get(conversation.id, 0)
        else:  # by status, per second: what a fault's window answered (0: no answer)
            vu.recorder.counter(
                "post_failures_by_status", vu.now, tags={"status": str(response.status)}
            )

    @property
    def sent(self) -> dict[str, Sent]:
        """The messages not settled yet (a settled one had every frame, once, intact, at
        its own conversation's sockets)."""
        return self.ledger.unsettled()

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


def set_up(target: Target, load: MessagingKnobs) -> tuple[list[Conversation], dict[str, str]]:
    """Log the pool in and create the conversations; (conversations, username -> token)."""
    users = list(target.users)
    problems = load.errors(len(users))
    if problems:
        raise ValueError(f"{target.name}: " + "; ".join(problems))
    plan = layout(users, load)
    with PlatformClient(target) as client:
        sessions = {u: client.login(u) for u in users[: min(load.pool, len(users))]}
        conversations = [
            client.create_conversation(sessions[owner], [sessions[o] for o in others])
            for owner, others in plan
        ]
    return conversations, {u: s.token for u, s in sessions.items()}


def record_delivery(
    result: LoadResult,
    verdict: DeliveryVerdict,
    ws_disconnects: int,
    settled_e2e: Sequence[SecondSnapshot] = (),
) -> None:
    """The verdict's counters and e2e times; ``settled_e2e``: the e2e times of settled
    messages, already recorded per second (``DeliveryLedger.e2e_snapshots``)."""
    rec, at = result.recorder, time.perf_counter()
    rec.ingest(settled_e2e)
    rec.counter("delivery_expected", at, value=float(verdict.expected))
    rec.counter("delivery_lost", at, value=float(verdict.lost))
    rec.counter("delivery_duplicated", at, value=float(verdict.duplicated))
    rec.counter("delivery_corrupted", at, value=float(verdict.corrupted))
    rec.counter("ws_disconnects", at, value=float(ws_disconnects))
    for ms in verdict.e2e_ms:
        rec.trend("e2e_delivery_ms", ms, at)


def drain(
    ctx: ScenarioContext[Any],
    progress: Callable[[], tuple[int, int]],
    result: LoadResult,
    drain_s: float,
    stall_s: float,
    holding: Callable[[], bool] = lambda: False,
) -> None:
    """Wait, at most ``drain_s``, for every expected delivery (``progress()``: pairs
    delivered, pairs owed), and no longer than ``stall_s`` without a new one; report it
    once a second (with the load's errors and dropped iterations, which no longer change).
    While ``holding()`` (a chaos experiment still holding or reverting its faults: the
    consumer may be down on purpose, or restarting), no delivery is no evidence of a
    loss: the stall is counted from when it stops holding."""
    rec = result.recorder
    errors = sum(int(rec.stats(n).get("count", 0)) for n in ("iteration_errors", "http_req_errors"))
    dropped = int(rec.stats("dropped_iterations").get("count", 0))
    started = time.monotonic()
    reported = started

    def report(delivered: int, total: int) -> None:
        elapsed = time.monotonic() - started
        progress = TestProgress(
            ctx.spec.key, "drain", elapsed, drain_s, 0.0, None, errors, dropped, total - delivered
        )
        ctx.watch(progress)

    last_count, last_change = -1, started
    while True:
        delivered, total = progress()
        if delivered >= total:
            break
        now = time.monotonic()
        if delivered != last_count or holding():
            last_count, last_change = delivered, now
        if now - started >= drain_s or now - last_change >= stall_s:
            break
        if now - reported >= 1.0:
            reported = now
            report(delivered, total)
        time.sleep(0.1)
    report(delivered, total)  # the last word: what is still missing, usually nothing


@dataclass
class MessagingRun:
    """One messaging run as its hooks see it: who is where, what was sent, what arrived."""

    conversations: list[Conversation]
    tokens: dict[str, str]  # username -> access token
    sockets: dict[str, str]  # listening socket label -> username
    recipients: dict[str, tuple[str, ...]]  # conversation id -> socket labels
    posts: PostMessages
    listener: Listener


Observe = Callable[[MessagingRun], AbstractContextManager[object]]
Judge = Callable[[MessagingRun, LoadResult], None]


def run_messaging_load(
    ctx: ScenarioContext[Any],
    load: MessagingKnobs | None = None,
    around_load: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    duration_s: float | None = None,
    *,
    rate: float | None = None,
    ping_every_s: float | None = None,
    observe: Observe | None = None,
    judge_more: Judge | None = None,
    holding: Callable[[], bool] = lambda: False,
) -> LoadResult:
    """Set up, listen, post at ``rate`` (the profile's unless given) for ``duration_s``
    (likewise), drain, and record. ``load`` defaults to the test's knobs; ``around_load()``
    is entered as the load starts and left when it ends (a chaos test's experiment runs
    inside it). A test that watches more gets ``observe(run)``, entered once every
    socket is open and left after the drain, and ``judge_more(run, result)`` after the
    delivery verdict; ``ping_every_s`` makes every socket ping (``Listener``);
    ``holding()`` suspends the drain's stall rule (``drain``)."""
    target = ctx.target
    load = load if load is not None else ctx.knobs
    conversations, tokens = set_up(target, load)
    participants = list(dict.fromkeys(u for c in conversations for u in c.participants))
    sockets = socket_labels(participants, load.sockets)
    recipients = recipients_by_socket(conversations, sockets)
    fanout = {conversation: len(labels) for conversation, labels in recipients.items()}
    ctx.progress(
        f"{ctx.spec.key}: {rate or ctx.rate:g} msg/s of {load.payload_bytes} B for "
        f"{duration_s or ctx.duration_s:g} s,"
        f" {len(sockets)} sockets"
        + (f" over {load.listener_processes} processes" if load.listener_processes > 1 else "")
    )
    listening = {label: tokens[user] for label, user in sockets.items()}
    listener = Listener(
        target.ws_url,
        listening,
        processes=load.listener_processes,
        ping_every_s=ping_every_s,
        layout=recipients,
    )
    ledger = DeliveryLedger(recipients, listener.received, load.settle_after_s)
    listener.on_frame = ledger.frame
    posts = PostMessages(
        conversations, dict(tokens), load.payload_bytes, target.password, ledger, fanout
    )
    with listener:
        run = MessagingRun(conversations, dict(tokens), sockets, recipients, posts, listener)
        with observe(run) if observe is not None else contextlib.nullcontext():

            def pending() -> int:  # cheap, once a second: pairs owed less pairs received
                return max(0, posts.expected_pairs - ledger.pairs_received())

            with around_load():
                result = ctx.load(
                    posts, max_vus=load.max_vus, rate=rate, duration_s=duration_s, pending=pending
                )
            drain(ctx, ledger.delivery_progress, result, load.drain_s, load.drain_stall_s, holding)
    verdict = ledger.verdict()
    settled_e2e = ledger.e2e_snapshots(result.recorder.run_start)
    record_delivery(result, verdict, listener.ws_disconnects, settled_e2e)
    if judge_more is not None:
        judge_more(run, result)
    return result
