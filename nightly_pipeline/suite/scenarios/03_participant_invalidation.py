"""Test 03, participant invalidation: participants are removed and re-added rapidly while
the removed user keeps reading; afterwards, how fast the participant cache recovers.

The plan's rate counts participant changes: each churn iteration is two (a removal and an
add), so iterations start at half the test's rate. One iteration, on a conversation no
other iteration is touching (concurrent look-ups of one conversation are not the point):

1. the member reads the conversation (200: it is cached as a member again);
2. the owner removes the member (``DELETE .../participants/{id}`` → 204);
3. the removed member polls ``GET /v1/conversations/{id}`` every ``poll_interval_s``:
   ``invalidation_delay_ms`` is from the removal's response to the first denied answer
   (403), ``poll_bound_s`` if none came; every 200 meanwhile is a ``stale_reads``;
4. the owner reads the conversation: its participants are served from the membership
   cache, and a list that still names the removed member is a stale read too (the
   platform's RLS decides access, so the cache's staleness shows here first);
5. the owner adds the member back.

After the churn, members read their conversations at the test's rate; the hit ratio of
each 1 s window (from the ``X-Cache`` answers) must be back above ``recovered_ratio``:
``hit_ratio_recovery_s`` is the end of the first such window after the churn stopped, or
``recovery_bound_s`` when it never came.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.client import PlatformClient, Session
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.conversation_http import JSON, cache_tag, json_body, tagged_request
from nightly_pipeline.suite.spec import Check, TestSpec

CHANGES_PER_ITERATION = 2
"""A churn iteration removes a member and adds them back: two participant changes."""


@dataclass(frozen=True)
class ParticipantInvalidationKnobs:
    conversations: int = 10
    members: int = 3  # besides the owner; removed and re-added in turn
    poll_interval_s: float = 0.002
    poll_bound_s: float = 1.0  # a removal not seen within this is a timeout
    recovered_ratio: float = 0.9
    recovery_bound_s: float = 60.0
    recovery_min_reads_per_s: float = 10.0
    max_vus: int = 200


KNOBS = ParticipantInvalidationKnobs()

SPEC = TestSpec(
    id="03",
    name="participant_invalidation",
    duration_s=600,
    rate=100,
    knobs=KNOBS,
    description="add and remove participants rapidly; reads must never see a stale membership",
    assets=("invalidation", "cache"),
    checks=(
        Check(
            "invalidation_p99_under_100ms",
            on="invalidation",
            metric="invalidation_delay_ms",
            expr="p(99)<100",
            severity="warn",
            plan="Invalidation propagation delay < 100ms",
            unit="ms",
        ),
        Check(
            "no_stale_reads",
            on="invalidation",
            metric="stale_reads",
            expr="count==0",
            severity="error",
            plan="No stale reads after invalidation",
            unit="count",
        ),
        Check(
            "hit_ratio_recovers_within_60s",
            on="cache",
            metric="hit_ratio_recovery_s",
            expr="max<60",
            severity="warn",
            plan="Cache hit recovery > 90% within 1min",
            unit="s",
        ),
    ),
)


@dataclass
class Churned:
    id: str
    owner: Session
    members: list[Session]
    turn: int = 0


@dataclass
class Churn:
    conversations: list[Churned]
    knobs: ParticipantInvalidationKnobs
    stale_reads: int = 0  # 200s to the removed user
    stale_lists: int = 0  # the owner still shown the removed user as a participant
    timeouts: int = 0
    busy: int = 0
    errors: int = 0
    _free: deque[int] = field(default_factory=deque)
    _n: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._free.extend(range(len(self.conversations)))

    async def iteration(self, vu: Vu) -> None:
        if not self._free:
            self.busy += 1  # every conversation is mid-churn: no two on one conversation
            return
        index = self._free.popleft()
        try:
            await self._churn(vu, self.conversations[index])
        finally:
            self._free.append(index)

    async def _churn(self, vu: Vu, conv: Churned) -> None:
        member = conv.members[conv.turn % len(conv.members)]
        conv.turn += 1
        path = f"/v1/conversations/{conv.id}"
        before = await tagged_request(
            vu, "GET", path, name="read_as_member", headers=member.headers()
        )
        if before.status != 200:
            self.errors += 1
            return
        removed = await vu.http.request(
            "DELETE",
            f"{path}/participants/{member.user_id}",
            headers=conv.owner.headers(),
            tags={"name": "remove_participant"},
        )
        if removed.status != 204:
            self.errors += 1
            return
        done_at = removed.finished_at
        bound_s = self.knobs.poll_bound_s
        delay_ms = bound_s * 1000.0
        while vu.now - done_at < bound_s:
            read = await tagged_request(
                vu,
                "GET",
                path,
                name="read_after_removal",
                headers=member.headers(),
                expected=(403,),
            )
            if read.status == 403:
                delay_ms = (read.finished_at - done_at) * 1000.0
                break
            if read.status == 200:
                self.stale_reads += 1
            await asyncio.sleep(self.knobs.poll_interval_s)
        else:
            self.timeouts += 1
        vu.recorder.trend("invalidation_delay_ms", delay_ms, time.perf_counter())
        seen = await tagged_request(
            vu, "GET", path, name="read_as_owner", headers=conv.owner.headers()
        )
        if seen.status == 200 and member.user_id in seen.json().get("participants", ()):
            self.stale_lists += 1
        added = await vu.http.post(
            f"{path}/participants",
            json_body({"user_id": member.user_id}),
            headers=conv.owner.headers(JSON),
            tags={"name": "add_participant"},
        )
        if added.status not in (200, 201):
            self.errors += 1


def hit_ratio_recovery(
    client: PlatformClient,
    conversations: list[Churned],
    reads_per_s: float,
    bound_s: float,
    recovered_ratio: float,
) -> tuple[float, list[float]]:
    """Seconds until a 1 s window of reads by members has a hit ratio above
    ``recovered_ratio`` (``bound_s`` if none), and every window's ratio."""
    everyone = [(c.id, (c.owner, *c.members)) for c in conversations]
    size = max((len(people) for _, people in everyone), default=0)
    # every conversation's owner first, then every first member, ...
    readers = [(conv, people[k]) for k in range(size) for conv, people in everyone]
    interval = 1.0 / reads_per_s
    start = time.monotonic()
    ratios: list[float] = []
    for window in itertools.count(1):
        window_end = start + window
        if window > bound_s:
            return bound_s, ratios
        hits = misses = 0
        next_at = time.monotonic()
        n = 0
        while next_at < window_end:
            conv, reader = readers[n % len(readers)]
            n += 1
            tag = cache_tag(client.get_conversation(reader, conv))
            hits += tag == "hit"
            misses += tag == "miss"
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        ratio = hits / (hits + misses) if hits + misses else 0.0
        ratios.append(ratio)
        if ratio > recovered_ratio:
            return min(bound_s, time.monotonic() - start), ratios
    raise AssertionError("unreachable")


def scenario(ctx: ScenarioContext[ParticipantInvalidationKnobs]) -> LoadResult:
    target, knobs = ctx.target, ctx.knobs
    users = list(target.users)
    if len(users) < knobs.members + 1:
        raise ValueError(
            f"{target.name}: Test 03 needs {knobs.members + 1} users, has {len(users)}"
        )
    with PlatformClient(target) as client:
        sessions = [client.login(u) for u in users[: knobs.conversations + knobs.members]]
        conversations = []
        for i in range(knobs.conversations):
            owner = sessions[i % len(sessions)]
            members = [sessions[(i + k) % len(sessions)] for k in range(1, knobs.members + 1)]
            conv = client.create_conversation(owner, members, f"churn {owner.username}")
            conversations.append(Churned(conv.id, owner, members))
        churn = Churn(conversations, knobs)
        ctx.progress(f"{ctx.spec.key}: {ctx.rate:g} changes/s for {ctx.duration_s:g} s")
        result = ctx.load(churn, max_vus=knobs.max_vus, rate=ctx.rate / CHANGES_PER_ITERATION)
        reads_per_s = max(knobs.recovery_min_reads_per_s, ctx.rate)
        recovery_s, ratios = hit_ratio_recovery(
            client, conversations, reads_per_s, knobs.recovery_bound_s, knobs.recovered_ratio
        )
    rec, at = result.recorder, time.perf_counter()
    rec.counter("stale_reads", at, value=float(churn.stale_reads + churn.stale_lists))
    rec.counter("stale_member_lists", at, value=float(churn.stale_lists))
    rec.counter("invalidation_timeouts", at, value=float(churn.timeouts))
    rec.counter("churn_busy", at, value=float(churn.busy))
    rec.counter("churn_errors", at, value=float(churn.errors))
    rec.gauge("hit_ratio_recovery_s", recovery_s, at)
    if ratios:
        rec.gauge("hit_ratio_first_window", ratios[0], at)
    ctx.progress(f"{ctx.spec.key}: hit ratio windows after the churn {ratios}")
    return result
