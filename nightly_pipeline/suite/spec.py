"""What a nightly test is, independent of how it runs: the plan's duration and rate, its
typed knobs, the metric assets it produces and its checks, each under a stable name.

A spec is validated when it is built (a bad one fails at import, every problem named).
A profile changes duration and load, never what is checked: the checks belong to the
spec, and every profile evaluates all of them.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from nightly_pipeline.loadgen.thresholds import parse_thresholds
from nightly_pipeline.suite.errors import ConfigurationError

Severity = Literal["error", "warn"]
"""error: a blocking check (loss, corruption, leakage, security); warn: a target (latency)."""

NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
"""A check or asset name: lower case words joined by single underscores."""
MAX_CHECK_NAME = 40
"""About what the Dagster UI shows of a check's name without cutting it."""
SCALES_WITH_LOAD = "scales_with_load"
"""Metadata key of a knob field that a profile scales like the rate (see ``scaled``)."""

K = TypeVar("K")


class SpecError(ConfigurationError):
    """A test spec that cannot be run; the message lists every problem."""


@dataclass(frozen=True)
class Check:
    """One acceptance criterion: a k6 threshold on a metric the test records, under a
    name people chose. The name is the check's identity (in Dagster, in history); the
    expression is data, so tuning it keeps the name and the history."""

    name: str  # "zero_message_loss"
    on: str  # the metric asset it judges: "delivery"
    metric: str  # k6 selector: "http_req_duration{name:post_message}"
    expr: str  # k6 expression: "p(95)<100"
    severity: Severity
    plan: str  # the plan's words: "Zero message loss"
    unit: str = ""  # of the observed value: "ms", "count", "ratio", "%", "s"

    @property
    def threshold(self) -> str:
        return f"{self.metric} {self.expr}"

    def errors(self) -> list[str]:
        problems = []
        if not NAME.match(self.name) or len(self.name) > MAX_CHECK_NAME:
            problems.append(
                f"check name {self.name!r} must be lower_case words joined by single"
                f" underscores, at most {MAX_CHECK_NAME} characters"
            )
        if self.severity not in ("error", "warn"):
            problems.append(f"check {self.name}: severity must be error or warn")
        if not self.plan.strip():
            problems.append(f"check {self.name}: say which of the plan's criteria it is")
        try:
            parse_thresholds({self.metric: [self.expr]})
        except ValueError as exc:
            problems.append(f"check {self.name}: {exc}")
        return problems


@dataclass(frozen=True)
class NoKnobs:
    """For a test with nothing to tune beyond its duration and rate."""


@dataclass(frozen=True)
class TestSpec(Generic[K]):
    """One nightly test: the plan's figures, its knobs, its metric assets and checks."""

    __test__ = False  # not a pytest class

    id: str  # "01"
    name: str  # "message_soak"
    duration_s: float  # the plan's duration
    rate: float  # iterations per second at the plan's load; 0: not rate-driven
    knobs: K  # a frozen dataclass: the test's own settings, defaults in one place
    description: str
    assets: tuple[str, ...]  # metric assets, e.g. ("latency", "delivery", "resources")
    checks: tuple[Check, ...]

    def __post_init__(self) -> None:
        problems = self.errors()
        if problems:
            listing = "\n  - ".join(problems)
            raise SpecError(f"test {self.id}_{self.name}:\n  - {listing}")

    @property
    def key(self) -> str:
        return f"{self.id}_{self.name}"

    @property
    def injects_faults(self) -> bool:
        """A chaos test (08–11): it records its faults' recovery."""
        return "recovery" in self.assets

    def check(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"{self.key} has no check {name!r}")

    def thresholds(self) -> dict[str, list[str]]:
        """The checks as a k6 thresholds mapping (validated by the engine's parser)."""
        out: dict[str, list[str]] = {}
        for check in self.checks:
            out.setdefault(check.metric, []).append(check.expr)
        return out

    def errors(self) -> list[str]:
        """Every problem of the spec, not just the first."""
        problems = []
        if not (len(self.id) == 2 and self.id.isdigit()):
            problems.append(f"id must be two digits, got {self.id!r}")
        if not NAME.match(self.name):
            problems.append(f"name {self.name!r} must be lower_case words")
        if self.duration_s <= 0:
            problems.append(f"duration_s must be > 0, got {self.duration_s}")
        if self.rate < 0:
            problems.append(f"rate must be >= 0, got {self.rate}")
        if not (dataclasses.is_dataclass(self.knobs) and not isinstance(self.knobs, type)):
            problems.append(f"knobs must be a frozen dataclass instance, got {self.knobs!r}")
        elif not type(self.knobs).__dataclass_params__.frozen:  # type: ignore[attr-defined]
            problems.append(f"knobs {type(self.knobs).__name__} must be frozen")
        if not self.assets:
            problems.append("a test must produce at least one metric asset")
        problems += [
            f"asset name {a!r} must be lower_case words" for a in self.assets if not NAME.match(a)
        ]
        if not self.checks:
            problems.append("a test must check something")
        seen: dict[str, Check] = {}
        for check in self.checks:
            problems += check.errors()
            if check.on not in self.assets:
                problems.append(
                    f"check {check.name} judges asset {check.on!r},"
                    f" which is not one of {self.assets}"
                )
            first = seen.setdefault(check.name, check)
            if first is not check:
                problems.append(
                    f"check name {check.name!r} is given twice: to {first.threshold!r}"
                    f" on {first.on} and to {check.threshold!r} on {check.on}"
                )
        thresholds = [c.threshold for c in self.checks]
        problems += [
            f"threshold {t!r} is checked twice"
            for t in sorted(set(thresholds))
            if thresholds.count(t) > 1
        ]
        return problems


def scales_with_load(default: int) -> Any:
    """A knob field that a profile scales like the rate (``messages=scales_with_load(10_000)``):
    at 20 % of the plan's load, 2,000 messages. Other knobs are the same at every profile."""
    return dataclasses.field(default=default, metadata={SCALES_WITH_LOAD: True})


def scaled(knobs: K, load: float) -> K:
    """``knobs`` with every ``scales_with_load`` field times ``load`` (at least 1)."""
    changes = {
        f.name: max(1, round(getattr(knobs, f.name) * load))
        for f in dataclasses.fields(knobs)  # type: ignore[arg-type]
        if f.metadata.get(SCALES_WITH_LOAD)
    }
    return dataclasses.replace(knobs, **changes) if changes else knobs  # type: ignore[type-var]
