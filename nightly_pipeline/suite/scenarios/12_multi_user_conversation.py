"""Test 12, multi-user conversations: 100 users with 10 devices each hold 1,000
WebSockets; each user owns one conversation with the next nine users (a ring: every user
is in ten conversations, every message reaches 10 users x 10 devices = 100 sockets), and
messages are posted round-robin over the 100 conversations (the plan's 100 each at the
nightly profile: 25 msg/s for 400 s; smoke posts 15 each, ci one to 30 of them).

- Every frame a socket receives is judged against its user's memberships: the
  conversations are made before the load and do not change during it (membership churn is
  Test 03's), so the memberships at a frame's moment are the set-up's. A frame of a
  conversation its user is not in is a ``cross_conversation_leaks``; the first ones are
  named (message, socket, user, conversation) in the check's detail.
- After the load each user tries to open and to post into a conversation it is not in
  (403 expected: ``sanctum_security_denied_total`` grows; a 2xx counts
  ``foreign_access_allowed``).
- The platform's own count of open sockets (``ws_connect_total`` - ``ws_close_total``,
  read once a second) must stay at 1,000 from the moment all are open to the end:
  ``ws_sockets_missing`` is the most it ever fell short.
- ``participant_cache_hit_ratio``: the API's membership cache over the run, less the
  set-up's look-ups (each owner opens its new conversation once, a compulsory miss).
- Memory per socket, as figures: the generator's (the listener processes' RSS growth
  while opening their sockets) and the API's (its RSS growth over the same moment).

The sockets are dealt over four listener processes (one cannot hold 1,000 sockets and keep
up on 2 cores) with compression off (~14 KiB a socket instead of ~50 KiB, websockets 17).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import psutil

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.suite.client import Conversation, PlatformClient, Session
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.conversation_http import cache_hit_ratio, cache_tag
from nightly_pipeline.suite.file_limits import check_socket_limits
from nightly_pipeline.suite.leaks import judge_leaks
from nightly_pipeline.suite.messaging_load import (
    MessagingKnobs,
    MessagingRun,
    message_body,
    run_messaging_load,
)
from nightly_pipeline.suite.sampling import Samples
from nightly_pipeline.suite.socket_census import SocketCensus, open_sockets
from nightly_pipeline.suite.spec import Check, TestSpec
from nightly_pipeline.suite.target import Target

KNOBS = MessagingKnobs(
    payload_bytes=1024,
    conversations=100,
    participants=10,
    pool=100,
    sockets=1000,
    listener_processes=4,
    max_vus=200,
)
SOCKETS_OPEN_WAIT_S = 10.0  # for the platform to count every socket it accepted
LEAKS_NAMED = 5

SPEC = TestSpec(
    id="12",
    name="multi_user_conversation",
    duration_s=400,
    rate=25,
    knobs=KNOBS,
    description="1,000 WebSockets of 100 users in 100 ten-member conversations; no leaks",
    assets=("isolation", "delivery", "websocket", "cache"),
    checks=(
        Check(
            "zero_cross_conversation_leaks",
            on="isolation",
            metric="cross_conversation_leaks",
            expr="count==0",
            severity="error",
            plan="Zero cross-conversation leakage",
            unit="count",
        ),
        Check(
            "foreign_access_denied",
            on="isolation",
            metric="sanctum_security_denied_total",
            expr="count>0",
            severity="error",
            plan="ACL denials > 0 (sanctum_security_denied_total)",
            unit="count",
        ),
        Check(
            "no_foreign_access_allowed",
            on="isolation",
            metric="foreign_access_allowed",
            expr="count==0",
            severity="error",
            plan="Zero cross-conversation leakage (a foreign read or post refused)",
            unit="count",
        ),
        Check(
            "cache_hit_ratio_over_90pct",
            on="cache",
            metric="participant_cache_hit_ratio",
            expr="value>0.9",
            severity="warn",
            plan="Participant cache hit > 90%",
            unit="ratio",
        ),
        Check(
            "all_sockets_stay_open",
            on="websocket",
            metric="ws_sockets_missing",
            expr="max==0",
            severity="error",
            plan="1,000 WebSockets (100 users x 10 devices) connected until the end",
            unit="count",
        ),
        Check(
            "zero_ws_disconnects",
            on="websocket",
            metric="ws_disconnects",
            expr="count==0",
            severity="error",
            plan="1,000 WebSockets (100 users x 10 devices) connected until the end",
            unit="count",
        ),
        Check(
            "zero_message_loss",
            on="delivery",
            metric="delivery_lost",
            expr="count==0",
            severity="error",
            plan="Every message delivered to every device of its participants",
            unit="count",
        ),
        Check(
            "each_message_delivered_once",
            on="delivery",
            metric="delivery_duplicated",
            expr="count==0",
            severity="error",
            plan="Every message delivered to every device of its participants",
            unit="count",
        ),
        Check(
            "zero_corrupted_messages",
            on="delivery",
            metric="delivery_corrupted",
            expr="count==0",
            severity="error",
            plan="Every message delivered intact (sha256)",
            unit="count",
        ),
    ),
)


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def warm_cache(target: Target, run: MessagingRun) -> tuple[int, int]:
    """Each owner opens its new conversation once (its first look-up is a compulsory
    miss); (hits, misses) as the answers' ``X-Cache`` say."""
    hits = misses = 0
    with PlatformClient(target) as client:
        for conversation in run.conversations:
            session = Session(conversation.owner, 0, run.tokens[conversation.owner])
            tag = cache_tag(client.get_conversation(session, conversation.id))
            hits, misses = hits + (tag == "hit"), misses + (tag == "miss")
    return hits, misses


def foreign_conversation(user: str, conversations: list[Conversation]) -> Conversation | None:
    """A conversation ``user`` is not in (the first of the ring's), if any."""
    return next((c for c in conversations if user not in c.participants), None)


def try_foreign_access(target: Target, run: MessagingRun) -> tuple[int, list[str]]:
    """Each user opens, then posts into, a conversation it is not in: every 2xx is
    allowed access, named; (allowed, what was allowed)."""
    allowed: list[str] = []
    with PlatformClient(target) as client:
        for user, token in run.tokens.items():
            foreign = foreign_conversation(user, run.conversations)
            if foreign is None:
                continue
            headers = {"Authorization": f"Bearer {token}"}
            read = client.client.get(f"/v1/conversations/{foreign.id}", headers=headers)
            body, _ = message_body(foreign.id, b"foreign")
            post = client.client.post(
                "/v1/messages",
                content=body,
                headers={**headers, "Content-Type": "application/json"},
            )
            for what, answer in (("read", read), ("post into", post)):
                if answer.is_success:
                    allowed.append(
                        f"{user} could {what} conversation {foreign.id} (HTTP {answer.status_code})"
                    )
    return len(allowed), allowed


class Observation:
    """What Test 12 watches around the load: the platform's open sockets, memory."""

    def __init__(self, target: Target, sockets: int) -> None:
        self.target = target
        self.sockets = sockets
        self.census = SocketCensus.before_sockets(target.metrics_urls)
        self.api_rss_before = rss_bytes(target.pids.get("api"))
        self.api_rss_open: int | None = None
        self.setup_cache = (0, 0)

    @contextlib.contextmanager
    def around(self, run: MessagingRun) -> Iterator[None]:
        self.api_rss_open = rss_bytes(self.target.pids.get("api"))
        self._wait_until_counted()
        self.setup_cache = warm_cache(self.target, run)
        with self.census:
            yield

    def _wait_until_counted(self) -> None:
        """Until the platform counts every socket the listeners opened (it counts each
        right after its handshake), at most ``SOCKETS_OPEN_WAIT_S``; past that the census
        shows what is missing."""
        deadline = time.monotonic() + SOCKETS_OPEN_WAIT_S
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                count = open_sockets(self.target.metrics_urls, client)
                if count is not None and count - self.census.baseline >= self.sockets:
                    return
                time.sleep(0.1)

    def record(self, run: MessagingRun, result: LoadResult) -> None:
        rec, at = result.recorder, time.perf_counter()
        fewest = self.census.fewest()
        if fewest is not None:
            rec.gauge("ws_sockets_missing", max(0.0, self.sockets - fewest), at)
            result.add_evidence(
                "ws_sockets_missing",
                f"the platform counted {fewest:g} of the {self.sockets} sockets open at its"
                f" lowest ({len(self.census.counts)} reads, {self.census.unreadable} unreadable)",
            )
        closed = run.listener.disconnected
        if closed:
            named = ", ".join(closed[:LEAKS_NAMED]) + (" ..." if len(closed) > LEAKS_NAMED else "")
            result.add_evidence("ws_disconnects", f"the server closed {len(closed)}: {named}")
        rec.counter("setup_cache_hits", at, value=float(self.setup_cache[0]))
        rec.counter("setup_cache_misses", at, value=float(self.setup_cache[1]))
        per_socket = run.listener.memory_per_socket_kib()
        if per_socket is not None:
            rec.gauge("listener_kib_per_socket", per_socket, at)
        if self.api_rss_before is not None and self.api_rss_open is not None:
            growth = max(0, self.api_rss_open - self.api_rss_before)
            rec.gauge("api_kib_per_socket", growth / self.sockets / 1024.0, at)


def record_leaks(run: MessagingRun, result: LoadResult) -> None:
    members = {c.id: frozenset(c.participants) for c in run.conversations}
    leaks = judge_leaks(run.listener.received, run.posts.sent, members, run.sockets, run.recipients)
    result.recorder.counter("cross_conversation_leaks", time.perf_counter(), value=len(leaks))
    for leak in leaks[:LEAKS_NAMED]:
        result.add_evidence("cross_conversation_leaks", leak.describe())
    if len(leaks) > LEAKS_NAMED:
        result.add_evidence("cross_conversation_leaks", f"... {len(leaks) - LEAKS_NAMED} more")


def scenario(ctx: ScenarioContext[MessagingKnobs]) -> LoadResult:
    knobs, target = ctx.knobs, ctx.target
    sockets = knobs.sockets or knobs.pool * knobs.participants
    per_listener = -(-sockets // knobs.listener_processes)
    check_socket_limits(per_listener, sockets, target.pids)
    watch = Observation(target, sockets)

    def judge_more(run: MessagingRun, result: LoadResult) -> None:
        watch.record(run, result)
        record_leaks(run, result)
        allowed, seen = try_foreign_access(target, run)
        result.recorder.counter("foreign_access_allowed", time.perf_counter(), value=allowed)
        for line in seen[:LEAKS_NAMED]:
            result.add_evidence("foreign_access_allowed", line)

    return run_messaging_load(ctx, observe=watch.around, judge_more=judge_more)


def derive(samples: Samples, recorder: Recorder, at: float) -> None:
    """The API's membership cache over the run, without the set-up's look-ups."""
    hits = recorder.stats("setup_cache_hits").get("count", 0.0)
    misses = recorder.stats("setup_cache_misses").get("count", 0.0)
    ratio = cache_hit_ratio(samples, hits, misses)
    if ratio is not None:
        recorder.gauge("participant_cache_hit_ratio", ratio, at)
