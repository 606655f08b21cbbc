"""constant-vus: a fixed number of VUs each looping iterations (closed model).

For WebSocket sessions and for showing what a closed model hides: a VU waits for
its previous iteration before starting the next, so a stalled target slows the
load instead of showing up in the latencies (coordinated omission).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from nightly_pipeline.loadgen.executors.base import RunBounds, register, split_evenly


@register
@dataclass(frozen=True)
class ConstantVus:
    type_name: ClassVar[str] = "constant-vus"
    vus: int
    bounds: RunBounds
    worker: int = 0
    workers: int = 1

    def errors(self) -> list[str]:
        problems = self.bounds.errors()
        if not 1 <= self.vus <= 100_000:
            problems.append(f"vus must be in [1, 100000], got {self.vus}")
        return problems

    def for_worker(self, index: int, count: int) -> ConstantVus:
        bounds = self.bounds.for_worker(index, count)
        vus = split_evenly(self.vus, index, count)
        return replace(self, bounds=bounds, vus=vus, worker=index, workers=count)
