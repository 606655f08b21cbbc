"""What a nightly test is, independent of how it runs: its plan figures, how profiles
scale them, what it checks and which metric assets it produces.

A profile changes duration and load, never what is checked: thresholds belong to the
spec, and every profile evaluates all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from nightly_pipeline.loadgen.thresholds import parse_thresholds

Severity = Literal["error", "warn"]
"""error: a blocking check (loss, corruption, leakage); warn: a target (latency)."""


@dataclass(frozen=True)
class Check:
    """One acceptance criterion as a k6 threshold on a metric the test records."""

    metric: str  # k6 selector, e.g. "http_req_duration{name:post_message}"
    expression: str  # e.g. "p(95)<100"
    severity: Severity
    why: str  # the plan's words

    def as_threshold(self) -> dict[str, list[str]]:
        return {self.metric: [self.expression]}


@dataclass(frozen=True)
class Profile:
    """How hard and how long: ``duration_s`` caps the plan's duration, ``load`` scales rates."""

    name: str
    max_duration_s: float
    load: float
    description: str

    def duration(self, plan_s: float) -> float:
        return min(plan_s, self.max_duration_s)

    def rate(self, plan_rate: float) -> float:
        return max(1.0, plan_rate * self.load)


PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        Profile("ci", 6.0, 0.2, "seconds per test, for the project's own tests"),
        Profile("smoke", 60.0, 1.0, "about a minute per test; the whole suite well under 20 min"),
        Profile("nightly", 24 * 3600.0, 1.0, "the plan's durations and rates"),
    )
}


@dataclass(frozen=True)
class TestSpec:
    """One nightly test: its plan figures, checks and the metric assets it produces."""

    __test__ = False  # not a pytest class

    id: str  # "01"
    name: str  # "message_soak"
    plan_duration_s: float
    plan_rate: float  # iterations (requests) per second at the plan's load; 0: not rate-driven
    checks: tuple[Check, ...]
    assets: tuple[str, ...]  # e.g. ("latency", "delivery", "resources")
    description: str
    extra: Mapping[str, float] = field(default_factory=dict)  # e.g. payload_bytes

    @property
    def key(self) -> str:
        return f"{self.id}_{self.name}"

    def thresholds(self) -> dict[str, list[str]]:
        """The checks as a k6 thresholds mapping (validated by the engine's parser)."""
        out: dict[str, list[str]] = {}
        for check in self.checks:
            out.setdefault(check.metric, []).append(check.expression)
        return out

    def errors(self) -> list[str]:
        problems = []
        if not (len(self.id) == 2 and self.id.isdigit()):
            problems.append(f"{self.name}: id must be two digits, got {self.id!r}")
        if self.plan_duration_s <= 0:
            problems.append(f"{self.key}: plan_duration_s must be > 0")
        if not self.checks:
            problems.append(f"{self.key}: a test must check something")
        if not self.assets:
            problems.append(f"{self.key}: a test must produce at least one metric asset")
        try:
            parse_thresholds(self.thresholds())
        except ValueError as exc:
            problems.append(f"{self.key}: {exc}")
        return problems
