"""What a test module amounts to (``SuiteTest``: its spec, its scenario, what it derives
from the target's samples) and what its scenario is given (``ScenarioContext``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Generic, TypeVar

from nightly_pipeline.loadgen import (
    ConstantArrivalRate,
    LoadResult,
    LoadTest,
    Progress,
    RunBounds,
    run_load,
)
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.runner import StopWhen
from nightly_pipeline.loadgen.scenario import Scenario
from nightly_pipeline.suite.profiles import Profile, RunPlan
from nightly_pipeline.suite.progress import TestProgress, Watch
from nightly_pipeline.suite.sampling import Samples
from nightly_pipeline.suite.spec import TestSpec
from nightly_pipeline.suite.target import Target

K = TypeVar("K")


@dataclass(frozen=True)
class ScenarioContext(Generic[K]):
    """Everything a test's scenario may use: its spec, the profile's plan for it (duration,
    rate, knobs), the target, a directory of its own, a line for the log (``progress``)
    and the figures of the moment for live displays (``watch``, about once a second)."""

    __test__ = False

    spec: TestSpec[K]
    profile: Profile
    target: Target
    run_dir: Path
    progress: Callable[[str], None]
    watch: Watch = lambda _: None
    chaos_ledger: Path | None = None  # where faults are recorded until reverted

    def __post_init__(self) -> None:
        if self.chaos_ledger is None:
            object.__setattr__(self, "chaos_ledger", self.run_dir / "chaos-ledger.json")

    @cached_property
    def plan(self) -> RunPlan[K]:
        return self.profile.plan(self.spec)

    @property
    def duration_s(self) -> float:
        return self.plan.duration_s

    @property
    def rate(self) -> float:
        return self.plan.rate

    @property
    def knobs(self) -> K:
        return self.plan.knobs

    def load(
        self,
        scenario: Scenario,
        *,
        max_vus: int,
        rate: float | None = None,
        duration_s: float | None = None,
        pending: Callable[[], int] | None = None,
        until: StopWhen | None = None,
    ) -> LoadResult:
        """The test's open-model load: ``scenario`` at a constant arrival ``rate`` for
        ``duration_s`` (the profile's unless given; earlier once ``until()``), against
        the target (loopback or its ``allow_hosts`` only). Each second's figures go to
        ``watch``, with ``pending()`` deliveries for a test that counts them."""

        def report(progress: Progress) -> None:
            waiting = pending() if pending is not None else None
            self.watch(TestProgress.of_load(self.spec.key, progress, waiting))

        return run_load(
            LoadTest(
                ConstantArrivalRate(
                    rate=self.rate if rate is None else rate,
                    bounds=RunBounds(self.duration_s if duration_s is None else duration_s),
                    max_vus=max_vus,
                ),
                scenario,
                self.target.base_url,
                allow_hosts=self.target.allow_hosts,
            ),
            report,
            until,
        )


Derive = Callable[[Samples, Recorder, float], None]
"""Figures computed from the target's samples after the run (a hit ratio from two
counters), recorded into the run's recorder at the given time."""


@dataclass(frozen=True)
class SuiteTest(Generic[K]):
    """One test of the suite, as its module declares it: ``SPEC``, ``scenario`` and,
    when it needs the target's samples, ``derive``."""

    __test__ = False

    spec: TestSpec[K]
    scenario: Callable[[ScenarioContext[K]], LoadResult]
    derive: Derive | None = None
