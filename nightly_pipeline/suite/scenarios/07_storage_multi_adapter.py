"""Test 07, storage multi-adapter stress: the storage probes at a fixed rate, 40 %
PostgreSQL writes (``/v1/storage/pg``), 30 % Redis Stream publishes (``/v1/storage/stream``)
and 30 % cache reads (``/v1/storage/cache?key=``), while the adapters' breakers, retries
and cache are watched.

Cache reads draw from a working set warmed before the load, with a few cold keys
(``cold_every``), so a healthy cache hits on most reads and a cache that forgets shows.
The figures come from the target's counters over the run:

- ``storage_cache_hit_ratio``: hits / (hits + misses) of the load (the warm-up's own
  hits and misses, known from its answers, are taken out);
- ``storage_breaker_opens``: growth of ``storage_circuit_breaker_transitions_total{state="open"}``
  (every adapter);
- ``storage_retry_ratio``: growth of ``storage_retries_total`` / storage requests sent.

The warm-up's figures travel to ``derive`` in the run's recorder (``storage_warmup_hits``,
``storage_warmup_misses``, ``storage_requests_sent``).
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.client import PlatformClient
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.sampling import Samples, counter_delta, labelled_growth
from nightly_pipeline.suite.spec import Check, TestSpec
from nightly_pipeline.suite.target import Target

MIX: tuple[str, ...] = ("pg",) * 4 + ("stream",) * 3 + ("cache",) * 3
"""Iteration ``n`` runs ``MIX[n % 10]``: 40 % pg, 30 % stream, 30 % cache."""
KEY_PREFIX = "nightly-07-"


@dataclass(frozen=True)
class StorageMultiAdapterKnobs:
    working_set: int = 64  # cache keys warmed before the load
    cold_every: int = 20
    """Every 20th cache read asks for a key never seen (a miss by design): 95 % warm."""
    max_vus: int = 1000


KNOBS = StorageMultiAdapterKnobs()

SPEC = TestSpec(
    id="07",
    name="storage_multi_adapter",
    duration_s=1200,
    rate=300,
    knobs=KNOBS,
    description="40 % PostgreSQL writes, 30 % stream publishes, 30 % cache reads",
    assets=("latency", "storage"),
    checks=(
        Check(
            "cache_hit_ratio_over_85pct",
            on="storage",
            metric="storage_cache_hit_ratio",
            expr="value>0.85",
            severity="warn",
            plan="storage_cache_hit_ratio > 0.85",
            unit="ratio",
        ),
        Check(
            "no_breaker_opens",
            on="storage",
            metric="storage_breaker_opens",
            expr="count==0",
            severity="error",
            plan="storage_circuit_breaker_transitions{state=open} == 0",
            unit="count",
        ),
        Check(
            "retries_under_1pct",
            on="storage",
            metric="storage_retry_ratio",
            expr="value<0.01",
            severity="warn",
            plan="storage_retries_total < 1% of requests",
            unit="ratio",
        ),
        Check(
            "storage_p95_under_100ms",
            on="latency",
            metric="http_req_duration",
            expr="p(95)<100",
            severity="warn",
            plan="All adapter latencies stable (no degradation)",
            unit="ms",
        ),
    ),
)


@dataclass
class StorageMix:
    """One storage probe per iteration, in the proportions of ``MIX``."""

    keys: Sequence[str]
    cold_every: int = KNOBS.cold_every
    seed: int = 7
    sent: int = 0
    _next: Iterator[int] = field(default_factory=itertools.count)
    _reads: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def cache_key(self) -> str:
        if next(self._reads) % self.cold_every == self.cold_every - 1:
            return f"{KEY_PREFIX}cold-{uuid.uuid4().hex}"
        return self._rng.choice(self.keys)

    async def iteration(self, vu: Vu) -> None:
        kind = MIX[next(self._next) % len(MIX)]
        self.sent += 1
        tags = {"name": f"storage_{kind}"}
        if kind == "cache":
            await vu.http.get(f"/v1/storage/cache?key={quote(self.cache_key())}", tags=tags)
        else:
            await vu.http.post(f"/v1/storage/{kind}", b"", tags=tags)


@dataclass(frozen=True)
class Warmed:
    keys: tuple[str, ...]
    hits: int
    misses: int


def warm_cache(target: Target, n: int) -> Warmed:
    """Read every key of the working set once (a miss fills it); what the target answered."""
    keys = tuple(f"{KEY_PREFIX}{i:04d}" for i in range(n))
    with PlatformClient(target) as client:
        hits = sum(client.read_storage_cache(key) for key in keys)
    return Warmed(keys, hits, len(keys) - hits)


def scenario(ctx: ScenarioContext[StorageMultiAdapterKnobs]) -> LoadResult:
    knobs = ctx.knobs
    warmed = warm_cache(ctx.target, knobs.working_set)
    mix = StorageMix(warmed.keys, cold_every=knobs.cold_every)
    ctx.progress(f"{ctx.spec.key}: {ctx.rate:g} storage requests/s for {ctx.duration_s:g} s")
    result = ctx.load(mix, max_vus=knobs.max_vus)
    rec, at = result.recorder, time.perf_counter()
    rec.counter("storage_warmup_hits", at, value=float(warmed.hits))
    rec.counter("storage_warmup_misses", at, value=float(warmed.misses))
    rec.counter("storage_requests_sent", at, value=float(mix.sent + len(warmed.keys)))
    return result


def derive(samples: Samples, recorder: Recorder, at: float) -> None:
    """Hit ratio of the load (without the warm-up), breaker opens, retries per request."""
    hits = counter_delta(samples, "storage_cache_hits_total")
    misses = counter_delta(samples, "storage_cache_misses_total")
    if hits is not None and misses is not None:
        hits = max(0.0, hits - recorder.stats("storage_warmup_hits").get("count", 0.0))
        misses = max(0.0, misses - recorder.stats("storage_warmup_misses").get("count", 0.0))
        if hits + misses > 0:
            recorder.gauge("storage_cache_hit_ratio", hits / (hits + misses), at)
    opens = labelled_growth(samples, "storage_circuit_breaker_transitions_total", state="open")
    if opens is not None:
        recorder.counter("storage_breaker_opens", at, value=opens)
    retries = counter_delta(samples, "storage_retries_total")
    requests = recorder.stats("storage_requests_sent").get("count", 0.0)
    if retries is not None and requests:
        recorder.gauge("storage_retry_ratio", retries / requests, at)
