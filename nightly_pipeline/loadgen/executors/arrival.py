"""Arrival schedules of the open model as pure functions.

An arrival schedule is the absolute offset (seconds from the run start) of each
iteration. Deadlines are computed from the run start, never by sleeping one period
after another, so a slow iteration cannot push the rest of the schedule back
(no coordinated omission).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """Go linearly from the previous rate to ``target`` per second over ``duration_s``."""

    duration_s: float
    target: float


def ramping_offsets(
    start_rate: float, stages: Sequence[Stage], *, worker: int = 0, workers: int = 1
) -> Iterator[float]:
    """Offsets of iterations ``worker, worker + workers, ...`` of a piecewise-linear rate.

    Iteration ``i`` happens when the cumulative arrivals reach ``i`` (the first at 0 s):
    inside a stage the rate is ``r(t) = r0 + (r1 - r0) t / D`` so the arrivals are
    ``N(t) = r0 t + (r1 - r0) t^2 / (2 D)``, inverted in closed form.
    """
    stage_start = 0.0
    arrived = 0.0  # cumulative arrivals at stage_start
    rate = start_rate
    i = worker
    for stage in stages:
        r0, r1, span = rate, stage.target, stage.duration_s
        in_stage = r0 * span + (r1 - r0) * span / 2
        while i < arrived + in_stage - 1e-9:
            need = i - arrived
            yield stage_start + _time_for_arrivals(need, r0, r1, span)
            i += workers
        stage_start += span
        arrived += in_stage
        rate = r1


def _time_for_arrivals(n: float, r0: float, r1: float, span: float) -> float:
    """Smallest t in [0, span] with r0 t + (r1 - r0) t^2 / (2 span) = n."""
    if n <= 0:
        return 0.0
    slope = (r1 - r0) / span
    if abs(slope) < 1e-12:
        return n / r0
    disc = r0 * r0 + 2 * slope * n
    root = math.sqrt(max(disc, 0.0))
    # Numerically stable form of (-r0 + root) / slope.
    return 2 * n / (r0 + root) if r0 + root > 0 else span
