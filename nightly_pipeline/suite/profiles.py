"""Profiles: how long and how hard a night runs each test, never what it checks.

A profile is chosen by name at an entry point (``nightly run --profile``, the Dagster
``profile`` resource) and is a ``Profile`` from there down. ``Profile.plan`` is the one
function that turns a test's plan figures and knobs into what runs at that profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, get_args

from nightly_pipeline.suite.errors import SelectionError
from nightly_pipeline.suite.spec import TestSpec, scaled

ProfileName = Literal["ci", "smoke", "nightly"]
K = TypeVar("K")


@dataclass(frozen=True)
class RunPlan(Generic[K]):
    """What one test runs at one profile."""

    duration_s: float
    rate: float
    knobs: K


@dataclass(frozen=True)
class Profile:
    """``max_duration_s`` caps the plan's duration; ``load`` scales its rates (and the
    knobs marked ``scales_with_load``)."""

    name: ProfileName
    max_duration_s: float
    load: float
    description: str
    infra_retry_delay_s: float = 10.0
    """The first wait before an infrastructure failure's retry (then 3x: exponential): a platform
    that did not start gets time to free its port; a ci run (seconds per test) waits 1 s."""

    def duration(self, plan_s: float) -> float:
        return min(plan_s, self.max_duration_s)

    def rate(self, plan_rate: float) -> float:
        return max(1.0, plan_rate * self.load)

    def plan(self, spec: TestSpec[K]) -> RunPlan[K]:
        return RunPlan(
            self.duration(spec.duration_s), self.rate(spec.rate), scaled(spec.knobs, self.load)
        )


PROFILES: Mapping[ProfileName, Profile] = {
    p.name: p
    for p in (
        Profile("ci", 6.0, 0.2, "seconds per test, for the project's own tests", 1.0),
        Profile("smoke", 60.0, 1.0, "about a minute per test; the whole suite well under 20 min"),
        Profile("nightly", 24 * 3600.0, 1.0, "the plan's durations and rates"),
    )
}
assert set(PROFILES) == set(get_args(ProfileName))


def profile_named(name: str) -> Profile:
    """The profile called ``name``; ``SelectionError`` listing the valid ones otherwise."""
    try:
        return PROFILES[name]  # type: ignore[index]
    except KeyError:
        raise SelectionError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}") from None
