"""Test 03, participant invalidation: participants are removed and re-added rapidly while
the removed user keeps reading; afterwards, how fast the participant cache recovers.

The plan's rate counts participant changes: each churn iteration is two (a removal and an
add), so iterations start at half the test's rate. One iteration, on a conversation no
other iteration is touching (concurrent look-ups of one conversation are not the point):

1. the member reads the conversation (200: it is cached as a member again);
2. the owner removes the member (``DELETE .../participants/{id}`` → 204);
3. the removed member polls ``GET /v1/conversations/{id}`` every ``POLL_INTERVAL_S``:
   ``invalidation_delay_ms`` is from the removal's response to the first denied answer
   (403), ``POLL_BOUND_S`` if none came; every 200 meanwhile is a ``stale_reads``;
4. the owner reads the conversation: its participants are served from the membership
   cache, and a list that still names the removed member is a stale read too (the
   platform's RLS decides access, so the cache's staleness shows here first);
5. the owner adds the member back.

After the churn, members read their conversations at the test's rate; the hit ratio of
each 1 s window (from the ``X-Cache`` answers) must be back above ``RECOVERED_RATIO``:
``hit_ratio_recovery_s`` is the end of the first such window after the churn stopped, or
``RECOVERY_BOUND_S`` when it never came.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import ConstantArrivalRate, LoadResult, LoadTest, RunBounds, run_load
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.crud_support import (
    Api,
    Session,
    cache_tag,
    json_body,
    tagged_request,
)
from nightly_pipeline.suite.runner import TestContext, register

CONVERSATIONS = 10
MEMBERS = 3  # besides the owner; removed and re-added in turn
POLL_INTERVAL_S = 0.002
POLL_BOUND_S = 1.0
RECOVERED_RATIO = 0.9
RECOVERY_BOUND_S = 60.0
RECOVERY_MIN_READS_PER_S = 10.0
CHANGES_PER_ITERATION = 2
JSON = ("Content-Type", "application/json")


@dataclass
class Churned:
    id: str
    owner: Session
    members: list[Session]
    turn: int = 0


@dataclass
class Churn:
    conversations: list[Churned]
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
        delay_ms = POLL_BOUND_S * 1000.0
        while vu.now - done_at < POLL_BOUND_S:
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
            await asyncio.sleep(POLL_INTERVAL_S)
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
    api: Api, conversations: list[Churned], reads_per_s: float, bound_s: float
) -> tuple[float, list[float]]:
    """Seconds until a 1 s window of reads by members has a hit ratio above
    ``RECOVERED_RATIO`` (``bound_s`` if none), and every window's ratio."""
    everyone = [(c.id, (c.owner, *c.members)) for c in conversations]
    readers = [(conv, people[k]) for k in range(MEMBERS + 1) for conv, people in everyone]
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
            tag = cache_tag(api.get(reader, conv))
            hits += tag == "hit"
            misses += tag == "miss"
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        ratio = hits / (hits + misses) if hits + misses else 0.0
        ratios.append(ratio)
        if ratio > RECOVERED_RATIO:
            return min(bound_s, time.monotonic() - start), ratios
    raise AssertionError("unreachable")


@register("03")
class ParticipantInvalidation:
    def execute(self, ctx: TestContext) -> LoadResult:
        target = ctx.target
        users = list(target.users)
        if len(users) < MEMBERS + 1:
            raise ValueError(f"{target.name}: Test 03 needs {MEMBERS + 1} users, has {len(users)}")
        with Api(target) as api:
            sessions = [api.login(u) for u in users[: CONVERSATIONS + MEMBERS]]
            conversations = []
            for i in range(CONVERSATIONS):
                owner = sessions[i % len(sessions)]
                members = [sessions[(i + k) % len(sessions)] for k in range(1, MEMBERS + 1)]
                conv = api.create(owner, members, f"churn {owner.username}")["id"]
                conversations.append(Churned(conv, owner, members))
            churn = Churn(conversations)
            ctx.progress(f"{ctx.spec.key}: {ctx.rate:g} changes/s for {ctx.duration_s:g} s")
            result = run_load(
                LoadTest(
                    ConstantArrivalRate(
                        rate=ctx.rate / CHANGES_PER_ITERATION,
                        bounds=RunBounds(ctx.duration_s),
                        max_vus=200,
                    ),
                    churn,
                    target.base_url,
                    allow_hosts=target.allow_hosts,
                )
            )
            reads_per_s = max(RECOVERY_MIN_READS_PER_S, ctx.rate)
            recovery_s, ratios = hit_ratio_recovery(
                api, conversations, reads_per_s, RECOVERY_BOUND_S
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
