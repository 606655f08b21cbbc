"""ramping-arrival-rate: iterations per second follow linear stages (open model)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

from nightly_pipeline.loadgen.executors.arrival import Stage, ramping_offsets
from nightly_pipeline.loadgen.executors.base import RunBounds, register, split_evenly


@register
@dataclass(frozen=True)
class RampingArrivalRate:
    """From ``start_rate``, move linearly to each stage's target over its duration.

    The run's duration is the sum of the stages; ``bounds.duration_s`` caps it.
    """

    type_name: ClassVar[str] = "ramping-arrival-rate"
    start_rate: float
    stages: tuple[Stage, ...]
    bounds: RunBounds
    max_vus: int = 100
    worker: int = 0
    workers: int = 1

    def errors(self) -> list[str]:
        problems = self.bounds.errors()
        if not 0 <= self.start_rate <= 1_000_000:
            problems.append(f"start_rate must be in [0, 1000000], got {self.start_rate}")
        if not self.stages:
            problems.append("stages must not be empty")
        for n, stage in enumerate(self.stages, 1):
            if stage.duration_s <= 0:
                problems.append(f"stage {n}: duration must be > 0, got {stage.duration_s}")
            if not 0 <= stage.target <= 1_000_000:
                problems.append(f"stage {n}: target must be in [0, 1000000], got {stage.target}")
        if not 1 <= self.max_vus <= 100_000:
            problems.append(f"max_vus must be in [1, 100000], got {self.max_vus}")
        return problems

    def offsets(self) -> Iterator[float]:
        return ramping_offsets(
            self.start_rate, self.stages, worker=self.worker, workers=self.workers
        )

    def for_worker(self, index: int, count: int) -> RampingArrivalRate:
        bounds = self.bounds.for_worker(index, count)
        vus = max(1, split_evenly(self.max_vus, index, count))
        return replace(self, bounds=bounds, max_vus=vus, worker=index, workers=count)
