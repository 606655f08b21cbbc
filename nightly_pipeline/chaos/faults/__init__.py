"""Proxy faults, one per module, registered by type name (see ``base``)."""

from nightly_pipeline.chaos.faults import latency, noop
from nightly_pipeline.chaos.faults.base import (
    DIRECTIONS,
    Chunk,
    Direction,
    Fault,
    FaultSlot,
    LinkAbort,
    LinkInfo,
    build_fault,
    fault_types,
    register,
)

__all__ = [
    "DIRECTIONS",
    "Chunk",
    "Direction",
    "Fault",
    "FaultSlot",
    "LinkAbort",
    "LinkInfo",
    "build_fault",
    "fault_types",
    "latency",
    "noop",
    "register",
]
