"""Test 06, sustained login: ``POST /v1/auth/login`` at a fixed rate over the target's
seeded users, while the target's token generation time, Redis pool and memory are watched.

- ``login_success`` (rate): 200 with an access and a refresh token.
- ``auth_token_generation_ms`` (trend): the server's ``auth_token_generation_seconds``
  histogram over the run (bucket growth from the first to the last scrape), in ms. The
  histogram times token issuing (signing and the session write), not the password check:
  scrypt is the client-visible login latency (``http_req_duration{name:login}``).
- ``redis_pool_utilization`` (gauge): the largest ``redis_pool_in_use_peak /
  redis_pool_max_connections`` of the run.
- ``process_rss_growth_pct``: the runner's, from the process samples.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from nightly_pipeline.loadgen import LoadResult
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.context import ScenarioContext
from nightly_pipeline.suite.sampling import Samples, counter_delta
from nightly_pipeline.suite.spec import Check, TestSpec

TOKEN_HISTOGRAM = "auth_token_generation_seconds"


@dataclass(frozen=True)
class SustainedLoginKnobs:
    max_vus: int = 1000
    """Logins in flight at most; at the platform's default scrypt cost the API falls
    behind well before this, and the iterations beyond it are counted as dropped."""


KNOBS = SustainedLoginKnobs()

SPEC = TestSpec(
    id="06",
    name="sustained_login",
    duration_s=1800,
    rate=200,
    knobs=KNOBS,
    description="logins per second, sustained",
    assets=("latency", "auth", "resources"),
    checks=(
        Check(
            "login_success_over_99_9pct",
            on="auth",
            metric="login_success",
            expr="rate>0.999",
            severity="error",
            plan="auth_login_success_rate > 99.9%",
            unit="ratio",
        ),
        Check(
            "token_p95_under_50ms",
            on="auth",
            metric="auth_token_generation_ms",
            expr="p(95)<50",
            severity="warn",
            plan="auth_token_generation_latency < 50ms (p95)",
            unit="ms",
        ),
        Check(
            "memory_growth_under_5pct",
            on="resources",
            metric="process_rss_growth_pct",
            expr="max<5",
            severity="error",
            plan="Memory stable (< 5% growth over 30min)",
            unit="%",
        ),
        Check(
            "redis_pool_under_80pct",
            on="resources",
            metric="redis_pool_utilization",
            expr="max<0.8",
            severity="warn",
            plan="Redis connection pool utilization < 80%",
            unit="ratio",
        ),
    ),
)


@dataclass
class Logins:
    """One login per iteration, round-robin over the users."""

    bodies: Sequence[bytes]
    _next: Iterator[int] = field(default_factory=itertools.count)

    async def iteration(self, vu: Vu) -> None:
        body = self.bodies[next(self._next) % len(self.bodies)]
        response = await vu.http.post(
            "/v1/auth/login",
            body,
            headers=[("Content-Type", "application/json")],
            tags={"name": "login"},
        )
        ok = False
        if response.status == 200:
            try:
                tokens = response.json()
                ok = bool(tokens.get("access_token")) and bool(tokens.get("refresh_token"))
            except (ValueError, AttributeError):
                ok = False
        vu.recorder.rate("login_success", ok, vu.now)


def histogram_growth(samples: Samples, name: str) -> list[tuple[float, float]]:
    """``(upper bound, observations in that bucket)`` of a Prometheus histogram over the
    run, from each cumulative ``_bucket`` counter's growth; ascending, ``inf`` last."""
    bounds = {
        dict(labels)["le"]
        for scrape in samples.scrapes
        for values in scrape.values.values()
        for (sample, labels), _ in values.items()
        if sample == f"{name}_bucket" and "le" in dict(labels)
    }
    cumulative = sorted(
        (float(le), counter_delta(samples, f"{name}_bucket", le=le) or 0.0) for le in bounds
    )
    out, below = [], 0.0
    for upper, count in cumulative:
        out.append((upper, max(0.0, count - below)))
        below = max(below, count)
    return out


def bucket_values(buckets: Sequence[tuple[float, float]]) -> Iterator[float]:
    """One value per observation, spread evenly inside its bucket (the linear
    interpolation of Prometheus' ``histogram_quantile``); the ``+Inf`` bucket's at the
    highest finite bound."""
    lower = 0.0
    for upper, count in buckets:
        n = round(count)
        for i in range(n):
            yield lower if math.isinf(upper) else lower + (upper - lower) * (i + 0.5) / n
        if not math.isinf(upper):
            lower = upper


def pool_utilization(samples: Samples) -> float | None:
    """The largest peak in-use / size of the API's Redis pool over the run's scrapes.

    The first scrape is left out: its peak window reaches back before the run."""
    ratios = []
    for scrape in samples.scrapes[1:] or samples.scrapes:
        peak = scrape.total("redis_pool_in_use_peak")
        size = scrape.total("redis_pool_max_connections")
        if peak is not None and size:
            ratios.append(peak / size)
    return max(ratios) if ratios else None


def scenario(ctx: ScenarioContext[SustainedLoginKnobs]) -> LoadResult:
    target = ctx.target
    if not target.users:
        raise ValueError(f"{target.name}: Test 06 needs seeded users, has none")
    bodies = [
        json.dumps({"username": u, "password": target.password}).encode() for u in target.users
    ]
    ctx.progress(f"{ctx.spec.key}: {ctx.rate:g} logins/s for {ctx.duration_s:g} s")
    return ctx.load(Logins(bodies), max_vus=ctx.knobs.max_vus)


def derive(samples: Samples, recorder: Recorder, at: float) -> None:
    """Token generation time from the server's histogram; the Redis pool's peak use."""
    for seconds in bucket_values(histogram_growth(samples, TOKEN_HISTOGRAM)):
        recorder.trend("auth_token_generation_ms", seconds * 1000.0, at)
    utilization = pool_utilization(samples)
    if utilization is not None:
        recorder.gauge("redis_pool_utilization", utilization, at)
