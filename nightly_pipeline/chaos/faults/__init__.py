"""Proxy faults (Toxiproxy's toxics), one per module, registered by type name (see ``base``)."""

from nightly_pipeline.chaos.faults import (
    bandwidth,
    latency,
    limit_data,
    noop,
    reset_peer,
    slicer,
    slow_close,
    timeout,
)
from nightly_pipeline.chaos.faults.base import (
    STREAMS,
    Chunk,
    Emit,
    Fault,
    FaultSlot,
    LinkAbort,
    LinkInfo,
    Stream,
    Stub,
    build_fault,
    fault_types,
    register,
)

__all__ = [
    "STREAMS",
    "Chunk",
    "Emit",
    "Fault",
    "FaultSlot",
    "LinkAbort",
    "LinkInfo",
    "Stream",
    "Stub",
    "bandwidth",
    "build_fault",
    "fault_types",
    "latency",
    "limit_data",
    "noop",
    "register",
    "reset_peer",
    "slicer",
    "slow_close",
    "timeout",
]
