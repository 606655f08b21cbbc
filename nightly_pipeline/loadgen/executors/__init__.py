"""Executors by k6 type name: configs here, their runtimes in ``loadgen.runtime``."""

from nightly_pipeline.loadgen.executors.arrival import Stage, ramping_offsets
from nightly_pipeline.loadgen.executors.base import REGISTRY, RunBounds, validate
from nightly_pipeline.loadgen.executors.constant_arrival_rate import ConstantArrivalRate
from nightly_pipeline.loadgen.executors.constant_vus import ConstantVus
from nightly_pipeline.loadgen.executors.ramping_arrival_rate import RampingArrivalRate

__all__ = [
    "REGISTRY",
    "ConstantArrivalRate",
    "ConstantVus",
    "RampingArrivalRate",
    "RunBounds",
    "Stage",
    "ramping_offsets",
    "validate",
]
