"""constant-arrival-rate: a fixed number of iterations per second (open model)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

from nightly_pipeline.loadgen.executors.arrival import Stage, ramping_offsets
from nightly_pipeline.loadgen.executors.base import RunBounds, register, split_evenly


@register
@dataclass(frozen=True)
class ConstantArrivalRate:
    """Start ``rate`` iterations per second for the whole duration.

    ``max_vus`` bounds the iterations in flight; an iteration due when all are busy
    is dropped and counted (``dropped_iterations``), never queued.
    """

    type_name: ClassVar[str] = "constant-arrival-rate"
    rate: float
    bounds: RunBounds
    max_vus: int = 100
    worker: int = 0
    workers: int = 1

    def errors(self) -> list[str]:
        problems = self.bounds.errors()
        if not 0 < self.rate <= 1_000_000:
            problems.append(f"rate must be in (0, 1000000] per second, got {self.rate}")
        if not 1 <= self.max_vus <= 100_000:
            problems.append(f"max_vus must be in [1, 100000], got {self.max_vus}")
        return problems

    def offsets(self) -> Iterator[float]:
        stage = Stage(self.bounds.duration_s, self.rate)
        return ramping_offsets(self.rate, [stage], worker=self.worker, workers=self.workers)

    def for_worker(self, index: int, count: int) -> ConstantArrivalRate:
        """Worker ``index`` takes every ``count``-th arrival of the whole schedule."""
        bounds = self.bounds.for_worker(index, count)
        vus = max(1, split_evenly(self.max_vus, index, count))
        return replace(self, bounds=bounds, max_vus=vus, worker=index, workers=count)
