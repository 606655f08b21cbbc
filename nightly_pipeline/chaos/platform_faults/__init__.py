"""Faults on a running platform, one per module behind ``inject()`` / ``revert()``
(see ``base``): processes (kill, terminate, pause, restart), links (down, a Toxiproxy
toxic, a kernel partition), the database (pg_lock), ``noop``; and on the Docker platform
its containers (disconnect, limits, bandwidth)."""

from nightly_pipeline.chaos.platform_faults import (
    bandwidth,
    disconnect,
    kill,
    limits,
    link_down,
    link_toxic,
    noop,
    partition,
    pause,
    pg_lock,
    restart,
    terminate,
)
from nightly_pipeline.chaos.platform_faults.base import (
    FaultError,
    PlatformFault,
    build,
    fault_class,
    fault_types,
    register,
)

__all__ = [
    "FaultError",
    "PlatformFault",
    "bandwidth",
    "build",
    "disconnect",
    "fault_class",
    "fault_types",
    "kill",
    "limits",
    "link_down",
    "link_toxic",
    "noop",
    "partition",
    "pause",
    "pg_lock",
    "register",
    "restart",
    "terminate",
]
