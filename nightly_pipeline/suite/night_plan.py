"""The plan of a night over N targets: which test runs on which target, in which order,
and when each is expected to end, computed before anything starts.

At the ``nightly`` profile the plan's durations add up to about four hours one test after
another; the plan runs its groups in parallel, each against its own services. A night
fanned out over N targets does the same: each target runs one test at a time (its own
pool), the targets run side by side.

Tests are placed longest-processing-time first (LPT: the longest unplaced unit goes to
the target expected to be free first), which is within 4/3 of the best possible end and
is what people mean by "balance the night". Two rules come first:

- ``together``: tests that must never run at the same time, so they share one target and
  run one after another. The chaos tests (08-11) are one such group by default: their
  faults go through one fault ledger per home and, for the partition, one iptables
  chain of the host; two of them at once could revert or blame each other's faults.
- ``alone``: tests given a target of their own, nothing else on it (a test whose figures
  another test on the same platform would disturb).

A test's expected time is its profile's duration plus ``Overheads.per_test_s`` (the
scenario's set-up, drain and checks), and a target's first test also pays
``Overheads.platform_start_s`` (the embedded platform starts on first use).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nightly_pipeline.suite.context import SuiteTest
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.profiles import Profile
from nightly_pipeline.suite.target import target_names_in


class PlanError(ConfigurationError):
    """The tests cannot be placed on these targets as the rules ask; the message says why
    and what to change."""


@dataclass(frozen=True)
class Overheads:
    """Time a night spends outside the tests' own durations, per test and per target.

    Measured here (2 cores shared with other work, load ~6; ``bench/fanned_night.py
    --profile ci --tests 02,03,06``): a fanned-out target's run began 15-18 s into the
    night (its worker starting Python and Dagster; 7.8 s for a one-target night in
    process), its first step took 22.8-24.7 s for a 6 s test (the platform's start), a
    later step 8.9-11.2 s (3-5 s of set-up, drain and checks). A smoke run of 7 tests:
    each 0.1-3.0 s over its 60 s. The defaults round these up (a nightly chaos test also
    waits for recovery after its last fault); ``nightly plan`` shows the plan."""

    platform_start_s: float = 30.0
    per_test_s: float = 10.0


@dataclass(frozen=True)
class Rules:
    together: tuple[frozenset[str], ...] = ()
    """Groups of test keys run on one target, one after another, never at once."""
    alone: frozenset[str] = frozenset()
    """Test keys that get a target with nothing else on it."""


def default_rules(tests: Iterable[SuiteTest]) -> Rules:
    """The chaos tests together (one fault ledger, one iptables chain); nothing alone."""
    chaos = frozenset(t.spec.key for t in tests if t.spec.injects_faults)
    return Rules(together=(chaos,) if chaos else ())


@dataclass(frozen=True)
class PlannedTest:
    key: str
    start_s: float  # from the night's start
    end_s: float


@dataclass(frozen=True)
class TargetPlan:
    name: str
    tests: tuple[PlannedTest, ...]

    @property
    def end_s(self) -> float:
        return self.tests[-1].end_s if self.tests else 0.0

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(t.key for t in self.tests)

    def summary(self) -> str:
        """One line: the target, its tests in order with expected ends, its end."""
        steps = ", ".join(f"{t.key} (ends {_clock(t.end_s)})" for t in self.tests)
        return f"{self.name}: {steps or 'nothing'}; ends {_clock(self.end_s)}"


@dataclass(frozen=True)
class NightPlan:
    profile: str
    targets: tuple[TargetPlan, ...]
    overheads: Overheads = field(default_factory=Overheads)

    @property
    def end_s(self) -> float:
        """When the night is expected to end, from its start: its last target's end."""
        return max((t.end_s for t in self.targets), default=0.0)

    def target_of(self, key: str) -> str:
        return next(t.name for t in self.targets if key in t.keys)

    def lines(self) -> list[str]:
        """The plan as a person reads it, one target a line, then the night's end."""
        return [
            *(t.summary() for t in self.targets),
            f"the night ({self.profile}, {len(self.targets)} target(s)) is expected to end "
            f"{_clock(self.end_s)} after it starts",
        ]

    def to_json(self) -> str:
        return json.dumps(
            {
                "profile": self.profile,
                "expected_end_s": round(self.end_s, 1),
                "targets": {
                    t.name: [
                        {"test": p.key, "start_s": round(p.start_s, 1), "end_s": round(p.end_s, 1)}
                        for p in t.tests
                    ]
                    for t in self.targets
                },
            }
        )


def expected_test_s(test: SuiteTest, profile: Profile, overheads: Overheads) -> float:
    """How long ``test`` is expected to take at ``profile``, its own set-up included."""
    return profile.duration(test.spec.duration_s) + overheads.per_test_s


def plan_night(
    tests: Sequence[SuiteTest],
    profile: Profile,
    targets: Sequence[str],
    *,
    overheads: Overheads | None = None,
    rules: Rules | None = None,
) -> NightPlan:
    """Place ``tests`` on ``targets`` (names, in order) by LPT under ``rules`` (default:
    ``default_rules``). Deterministic: ties go to the catalog's order and the first target.

    A target runs its tests in key order (``01_...`` first; the order does not change
    when it ends): the order Dagster runs a run's steps in when nothing sets their
    priority, as in the scheduled night's runs (``automation.schedules``), so every plan
    a person sees is the order things happen."""
    overheads = overheads or Overheads()
    rules = default_rules(tests) if rules is None else rules
    if not targets:
        raise PlanError("a night needs at least one target")
    if len(set(targets)) != len(targets):
        raise PlanError(f"target names must be unique: {', '.join(targets)}")
    units = _units(tests, rules)
    alone = [u for u in units if u[0] in rules.alone]
    shared = [u for u in units if u[0] not in rules.alone]
    free = len(targets) - len(alone)
    if free < 0 or (free == 0 and shared):
        raise PlanError(
            f"{len(alone)} test(s) must run alone ({', '.join(u[0] for u in alone)}) and "
            f"{len(shared)} more need a target of their own: give the night at least "
            f"{len(alone) + (1 if shared else 0)} targets, or drop a test from Rules.alone"
        )
    by_key = {t.spec.key: t for t in tests}

    def cost(unit: tuple[str, ...]) -> float:
        return sum(expected_test_s(by_key[k], profile, overheads) for k in unit)

    placed: list[list[tuple[str, ...]]] = [[] for _ in targets]
    loads = [0.0] * len(targets)
    for i, unit in enumerate(alone):
        placed[i].append(unit)
        loads[i] = overheads.platform_start_s + cost(unit)
    open_targets = range(len(alone), len(targets))
    for unit in sorted(shared, key=cost, reverse=True):  # stable: catalog order on ties
        best = min(open_targets, key=lambda i: loads[i])
        if not placed[best]:
            loads[best] += overheads.platform_start_s
        placed[best].append(unit)
        loads[best] += cost(unit)
    plans = []
    for name, target_units in zip(targets, placed, strict=True):
        clock = overheads.platform_start_s if target_units else 0.0
        steps = []
        for key in sorted(k for unit in target_units for k in unit):
            end = clock + expected_test_s(by_key[key], profile, overheads)
            steps.append(PlannedTest(key, clock, end))
            clock = end
        plans.append(TargetPlan(name, tuple(steps)))
    return NightPlan(profile.name, tuple(plans), overheads)


def _units(tests: Sequence[SuiteTest], rules: Rules) -> list[tuple[str, ...]]:
    """The tests as units to place: each ``together`` group (of the tests present) as
    one unit in catalog order, every other test on its own."""
    keys = [t.spec.key for t in tests]
    grouped: dict[str, tuple[str, ...]] = {}
    for group in rules.together:
        members = tuple(k for k in keys if k in group)
        if members and rules.alone & set(members) and len(members) > 1:
            raise PlanError(
                f"{', '.join(sorted(rules.alone & set(members)))} must run alone but is in "
                f"a group that shares a target ({', '.join(members)}): pick one rule"
            )
        for k in members:
            if k in grouped:
                raise PlanError(f"{k} is in two 'together' groups: merge them")
            grouped[k] = members
    units, seen = [], set()
    for k in keys:
        unit = grouped.get(k, (k,))
        if unit not in seen:
            seen.add(unit)
            units.append(unit)
    return units


def _clock(seconds: float) -> str:
    """``1:02:03`` (h:mm:ss) for a plan line."""
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def target_names(count: int, prefix: str = "embedded") -> tuple[str, ...]:
    """``embedded-1`` ... ``embedded-N``: the names of N embedded platforms."""
    if count < 1:
        raise PlanError(f"--targets must be at least 1, got {count}")
    return tuple(f"{prefix}-{i}" for i in range(1, count + 1))


PLATFORM_KINDS = ("embedded", "docker")
"""``--target`` values that start a platform per run (``TargetResource.target``): N of
them make N targets (N embedded platforms, or N Docker platforms, each on its own network)."""


@dataclass(frozen=True)
class PlacedTarget:
    """Where a planned target is: ``embedded``, or a target file and its entry."""

    target: str
    entry: str = ""


def night_places(target: str, count: int | None) -> dict[str, PlacedTarget]:
    """The targets of a fanned-out night by name: ``count`` embedded platforms
    (``embedded-1`` ...), or a target file's targets (its first ``count`` when given)."""
    if target in PLATFORM_KINDS:
        return {name: PlacedTarget(target) for name in target_names(count or 1, target)}
    names = target_names_in(Path(target))
    if count is not None:
        if count > len(names):
            raise PlanError(
                f"--targets {count}: {target} lists {len(names)} target(s) "
                f'({", ".join(names)}); add entries under "targets" or ask for fewer'
            )
        names = names[:count]
    return {name: PlacedTarget(target, name) for name in names}
