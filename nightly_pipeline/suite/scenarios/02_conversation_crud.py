"""Test 02, conversation CRUD: an open-model mix of 40 % create, 30 % list, 20 % update
and 10 % delete, while row-level security, optimistic concurrency and the participant
cache are watched.

- Updates are read-modify-write: GET the conversation (its membership checked through the
  participant cache: the request is tagged ``cache:hit|miss`` from ``X-Cache``), then
  PATCH with ``If-Match: <version>``. Most updates touch the user's active conversations
  (a working set created before the load, so they are cached); one in
  ``update_fresh_every`` touches a conversation created during the run (a cache miss).
- Version conflicts happen for real: one update in ``race_every`` is two devices of the
  same user saving at once, two PATCHes with the same ``If-Match`` in flight together;
  the database decides which one is stale (409). Deletes carry the version the client
  last saw and re-read once on 409.
- One list in ``foreign_every`` is followed by an attempt to open a conversation of other
  users (403 expected); a 200, or a foreign conversation in a listing, counts
  ``foreign_access_allowed``.
- ``participant_cache_hit_ratio`` comes from the platform's hit/miss counters over the run,
  less the look-ups of the set-up (known from their ``X-Cache`` answers, recorded as
  ``setup_cache_hits`` / ``setup_cache_misses``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.client import TOKEN_REFRESH_S, PlatformClient, Session
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.conversation_http import (
    JSON,
    cache_hit_ratio,
    cache_tag,
    json_body,
    tagged_request,
    version_of,
)
from nightly_pipeline.suite.sampling import Samples
from nightly_pipeline.suite.spec import Check, TestSpec

MIX = "CLCULCDLCU"
"""Operations in order, repeated: 4 create, 3 list, 2 update, 1 delete in every 10."""
MAX_FRESH = 10_000
"""Conversations created during the run that are remembered for updates and deletes."""


@dataclass(frozen=True)
class ConversationCrudKnobs:
    users: int = 20  # logged in, each with a working set
    members: int = 3  # per working-set conversation, the owner included
    update_fresh_every: int = 5  # one update in N touches a conversation of the run
    race_every: int = 3  # one update in N is two devices saving at once
    foreign_every: int = 3  # one list in N is followed by a foreign read
    max_vus: int = 500


KNOBS = ConversationCrudKnobs()

SPEC = TestSpec(
    id="02",
    name="conversation_crud",
    duration_s=900,
    rate=200,
    knobs=KNOBS,
    description="40 % create, 30 % list, 20 % update, 10 % delete conversations",
    assets=("latency", "security", "cache"),
    checks=(
        Check(
            "no_foreign_row_served",
            on="security",
            metric="foreign_access_allowed",
            expr="count==0",
            severity="error",
            plan="RLS enforcement: no foreign conversation served",
            unit="count",
        ),
        Check(
            "foreign_access_denied_403",
            on="security",
            metric="sanctum_security_denied_total",
            expr="count>0",
            severity="error",
            plan="RLS enforcement (403 on unauthorized access)",
            unit="count",
        ),
        Check(
            "stale_versions_get_409",
            on="security",
            metric="messaging_conversation_version_conflicts_total",
            expr="count>0",
            severity="error",
            plan="Optimistic concurrency (409 on version conflicts)",
            unit="count",
        ),
        Check(
            "cache_hit_ratio_over_80pct",
            on="cache",
            metric="participant_cache_hit_ratio",
            expr="value>0.8",
            severity="warn",
            plan="Cache hit rate > 80%",
            unit="ratio",
        ),
        Check(
            "cached_read_p95_under_50ms",
            on="latency",
            metric="http_req_duration{cache:hit}",
            expr="p(95)<50",
            severity="warn",
            plan="P95 latency < 50ms (with cache)",
            unit="ms",
        ),
        Check(
            "uncached_read_p95_under_200ms",
            on="latency",
            metric="http_req_duration{cache:miss}",
            expr="p(95)<200",
            severity="warn",
            plan="P95 latency < 200ms (cache miss)",
            unit="ms",
        ),
    ),
)


@dataclass
class Fresh:
    """A conversation created during the run, and the last version its owner saw."""

    id: str
    owner: str
    version: int


@dataclass
class CrudMix:
    sessions: list[Session]
    working: dict[str, list[str]]  # username -> ids of their working-set conversations
    foreign: dict[str, list[str]]  # username -> working-set ids they are not in
    password: str
    knobs: ConversationCrudKnobs
    fresh: deque[Fresh] = field(default_factory=deque)
    foreign_allowed: int = 0
    conflicts_seen: int = 0
    skipped: int = 0
    _n: itertools.count = field(default_factory=itertools.count)
    _lists: itertools.count = field(default_factory=itertools.count)
    _updates: itertools.count = field(default_factory=itertools.count)
    _token_at: float = field(default_factory=time.perf_counter)
    by_name: dict[str, Session] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {s.username: s for s in self.sessions}

    async def iteration(self, vu: Vu) -> None:
        n = next(self._n)
        if vu.now - self._token_at > TOKEN_REFRESH_S:
            await self._refresh(vu)
        user = self.sessions[n % len(self.sessions)]
        op = MIX[n % len(MIX)]
        if op == "C":
            await self._create(vu, user, self.sessions[(n + 1) % len(self.sessions)])
        elif op == "L":
            await self._list(vu, user)
        elif op == "U":
            await self._update(vu, user)
        else:
            await self._delete(vu)

    async def _create(self, vu: Vu, user: Session, other: Session) -> None:
        body = json_body({"title": f"crud {user.username}", "participants": [other.user_id]})
        response = await vu.http.post(
            "/v1/conversations",
            body,
            headers=user.headers(JSON),
            tags={"name": "create_conversation"},
        )
        if response.status == 201:
            conv = response.json()
            self.fresh.append(Fresh(conv["id"], user.username, int(conv["version"])))
            while len(self.fresh) > MAX_FRESH:
                self.fresh.popleft()

    async def _list(self, vu: Vu, user: Session) -> None:
        response = await vu.http.get(
            "/v1/conversations?limit=100",
            headers=user.headers(),
            tags={"name": "list_conversations"},
        )
        if response.status == 200:
            listed = {c["id"] for c in response.json()["conversations"]}
            self.foreign_allowed += len(listed & set(self.foreign[user.username]))
        k = next(self._lists)
        if k % self.knobs.foreign_every == 0 and self.foreign[user.username]:
            foreign = self.foreign[user.username]
            conv = foreign[k // self.knobs.foreign_every % len(foreign)]
            probe = await tagged_request(
                vu,
                "GET",
                f"/v1/conversations/{conv}",
                name="foreign_get",
                headers=user.headers(),
                expected=(403,),
            )
            if probe.status == 200:
                self.foreign_allowed += 1

    async def _update(self, vu: Vu, user: Session) -> None:
        k = next(self._updates)
        fresh: Fresh | None = None
        if k % self.knobs.update_fresh_every == 0 and self.fresh:
            fresh = self.fresh[-1]
            user, conv = self.by_name[fresh.owner], fresh.id
        else:
            mine = self.working[user.username]
            conv = mine[k % len(mine)]
        read = await tagged_request(
            vu,
            "GET",
            f"/v1/conversations/{conv}",
            name="get_conversation",
            headers=user.headers(),
            expected=(404,) if fresh else (),
        )
        version = version_of(read) if read.status == 200 else None
        if version is None:
            return
        devices = 2 if k % self.knobs.race_every == 0 else 1
        headers = user.headers(JSON, ("If-Match", str(version)))
        saves = await asyncio.gather(
            *(
                vu.http.request(
                    "PATCH",
                    f"/v1/conversations/{conv}",
                    body=json_body({"title": f"edit {k}.{d}"}),
                    headers=headers,
                    tags={"name": "update_conversation"},
                    expected=(409, 404) if fresh else (409,),
                )
                for d in range(devices)
            )
        )
        self.conflicts_seen += sum(1 for s in saves if s.status == 409)
        for saved in saves:
            new = version_of(saved) if saved.status == 200 else None
            if fresh is not None and new is not None:
                fresh.version = max(fresh.version, new)

    async def _delete(self, vu: Vu) -> None:
        if not self.fresh:
            self.skipped += 1
            return
        fresh = self.fresh.popleft()
        owner = self.by_name[fresh.owner]
        for attempt in range(2):
            response = await vu.http.request(
                "DELETE",
                f"/v1/conversations/{fresh.id}",
                headers=owner.headers(("If-Match", str(fresh.version))),
                tags={"name": "delete_conversation"},
                expected=(409,),
            )
            if response.status != 409 or attempt:
                self.conflicts_seen += response.status == 409
                return
            self.conflicts_seen += 1
            read = await tagged_request(
                vu,
                "GET",
                f"/v1/conversations/{fresh.id}",
                name="get_conversation",
                headers=owner.headers(),
            )
            fresh.version = version_of(read) or fresh.version

    async def _refresh(self, vu: Vu) -> None:
        self._token_at = vu.now
        for session in self.sessions:
            body = json_body({"username": session.username, "password": self.password})
            response = await vu.http.post(
                "/v1/auth/login", body, headers=[JSON], tags={"name": "login"}
            )
            if response.status == 200:
                session.token = response.json()["access_token"]


def scenario(ctx: ScenarioContext[ConversationCrudKnobs]) -> LoadResult:
    target, knobs = ctx.target, ctx.knobs
    users = list(target.users)[: knobs.users]
    if len(users) < knobs.members + 1:
        raise ValueError(
            f"{target.name}: Test 02 needs {knobs.members + 1} users, has {len(users)}"
        )
    setup_hits = setup_misses = 0
    with PlatformClient(target) as client:
        sessions = [client.login(u) for u in users]
        working: dict[str, list[str]] = {s.username: [] for s in sessions}
        members: dict[str, set[str]] = {}
        for i, owner in enumerate(sessions):
            others = [sessions[(i + k) % len(sessions)] for k in range(1, knobs.members)]
            conv = client.create_conversation(owner, others, f"working set {owner.username}")
            members[conv.id] = set(conv.participants)
            for name in conv.participants:
                working[name].append(conv.id)
            # warm the cache, as an active user would
            tag = cache_tag(client.get_conversation(owner, conv.id))
            setup_hits += tag == "hit"
            setup_misses += tag == "miss"
    foreign = {s.username: [c for c, m in members.items() if s.username not in m] for s in sessions}
    mix = CrudMix(sessions, working, foreign, target.password, knobs)
    ctx.progress(f"{ctx.spec.key}: {ctx.rate:g} req/s for {ctx.duration_s:g} s")
    result = ctx.load(mix, max_vus=knobs.max_vus)
    rec, at = result.recorder, time.perf_counter()
    rec.counter("foreign_access_allowed", at, value=float(mix.foreign_allowed))
    rec.counter("version_conflicts_seen", at, value=float(mix.conflicts_seen))
    rec.counter("crud_skipped", at, value=float(mix.skipped))
    rec.counter("setup_cache_hits", at, value=float(setup_hits))
    rec.counter("setup_cache_misses", at, value=float(setup_misses))
    return result


def derive(samples: Samples, recorder: Recorder, at: float) -> None:
    """The participant cache's hit ratio of the load, without the set-up's look-ups."""
    setup_hits = recorder.stats("setup_cache_hits").get("count", 0.0)
    setup_misses = recorder.stats("setup_cache_misses").get("count", 0.0)
    ratio = cache_hit_ratio(samples, setup_hits, setup_misses)
    if ratio is not None:
        recorder.gauge("participant_cache_hit_ratio", ratio, at)
