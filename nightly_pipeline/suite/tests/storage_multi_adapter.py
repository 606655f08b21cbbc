"""Test 07, storage multi-adapter stress: the storage probes at a fixed rate, 40 %
PostgreSQL writes (``/v1/storage/pg``), 30 % Redis Stream publishes (``/v1/storage/stream``)
and 30 % cache reads (``/v1/storage/cache?key=``), while the adapters' breakers, retries
and cache are watched.

Cache reads draw from a working set warmed before the load, with a few cold keys
(``COLD_EVERY``), so a healthy cache hits on most reads and a cache that forgets shows.
The figures come from the target's counters over the run:

- ``storage_cache_hit_ratio``: hits / (hits + misses) of the load (the warm-up's own
  hits and misses, known from its answers, are taken out);
- ``storage_breaker_opens``: growth of ``storage_circuit_breaker_transitions_total{state="open"}``
  (every adapter);
- ``storage_retry_ratio``: growth of ``storage_retries_total`` / storage requests sent.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from nightly_pipeline.loadgen import ConstantArrivalRate, LoadResult, LoadTest, RunBounds, run_load
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.control import ControlPlaneError
from nightly_pipeline.suite.runner import TestContext, register
from nightly_pipeline.suite.sampling import Samples, counter_delta
from nightly_pipeline.testbed.target import Target

MIX: tuple[str, ...] = ("pg",) * 4 + ("stream",) * 3 + ("cache",) * 3
"""Iteration ``n`` runs ``MIX[n % 10]``: 40 % pg, 30 % stream, 30 % cache."""
WORKING_SET = 64
COLD_EVERY = 20
"""Every 20th cache read asks for a key never seen (a miss by design): 95 % warm reads."""
KEY_PREFIX = "nightly-07-"


@dataclass
class StorageMix:
    """One storage probe per iteration, in the proportions of ``MIX``."""

    keys: Sequence[str]
    seed: int = 7
    sent: int = 0
    _next: Iterator[int] = field(default_factory=itertools.count)
    _reads: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def cache_key(self) -> str:
        if next(self._reads) % COLD_EVERY == COLD_EVERY - 1:
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


def warm_cache(target: Target, n: int = WORKING_SET, timeout_s: float = 10.0) -> Warmed:
    """Read every key of the working set once (a miss fills it); what the target answered."""
    check_target(target.base_url, target.allow_hosts)
    keys = tuple(f"{KEY_PREFIX}{i:04d}" for i in range(n))
    hits = misses = 0
    with httpx.Client(base_url=target.base_url, timeout=timeout_s, trust_env=False) as client:
        for key in keys:
            response = client.get("/v1/storage/cache", params={"key": key})
            if response.status_code != 200:
                raise ControlPlaneError(
                    f"warm the cache on {target.name}: HTTP {response.status_code}"
                    f" {response.text[:300]}"
                )
            if response.json().get("hit"):
                hits += 1
            else:
                misses += 1
    return Warmed(keys, hits, misses)


def labelled_growth(samples: Samples, name: str, witness: str, **labels: str) -> float | None:
    """Growth of a labelled counter over the run, counting a label set that first appears
    mid-run from zero (a labelled series is only exported once it fired).

    Only scrapes that read ``witness`` (an unlabelled counter of the same exporter, always
    exported) count, so an unreadable endpoint is None rather than zero."""
    values = [
        scrape.total(name, **labels) or 0.0
        for scrape in samples.scrapes
        if scrape.total(witness) is not None
    ]
    if not values:
        return None
    return sum(b - a if b >= a else b for a, b in itertools.pairwise(values))


@register("07")
class StorageMultiAdapter:
    def __init__(self) -> None:
        self.warmed = Warmed((), 0, 0)
        self.requests = 0

    def execute(self, ctx: TestContext) -> LoadResult:
        target = ctx.target
        self.warmed = warm_cache(target)
        scenario = StorageMix(self.warmed.keys)
        ctx.progress(f"{ctx.spec.key}: {ctx.rate:g} storage requests/s for {ctx.duration_s:g} s")
        result = run_load(
            LoadTest(
                ConstantArrivalRate(rate=ctx.rate, bounds=RunBounds(ctx.duration_s), max_vus=1000),
                scenario,
                target.base_url,
                allow_hosts=target.allow_hosts,
            )
        )
        self.requests = scenario.sent + len(self.warmed.keys)
        return result

    def derive(self, samples: Samples, recorder: Recorder, at: float) -> None:
        hits = counter_delta(samples, "storage_cache_hits_total")
        misses = counter_delta(samples, "storage_cache_misses_total")
        if hits is not None and misses is not None:
            hits = max(0.0, hits - self.warmed.hits)
            misses = max(0.0, misses - self.warmed.misses)
            if hits + misses > 0:
                recorder.gauge("storage_cache_hit_ratio", hits / (hits + misses), at)
        opens = labelled_growth(
            samples,
            "storage_circuit_breaker_transitions_total",
            "storage_retries_total",
            state="open",
        )
        if opens is not None:
            recorder.counter("storage_breaker_opens", at, value=opens)
        retries = counter_delta(samples, "storage_retries_total")
        if retries is not None and self.requests:
            recorder.gauge("storage_retry_ratio", retries / self.requests, at)
