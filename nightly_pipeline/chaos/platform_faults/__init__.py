"""Faults on a running platform, one per module behind ``inject()`` / ``revert()``
(see ``base``): processes (kill, terminate, pause, restart), links (down, a Toxiproxy
toxic, a kernel partition), the database (pg_lock), and ``noop``."""

from nightly_pipeline.chaos.platform_faults import (
    kill,
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
    "build",
    "fault_class",
    "fault_types",
    "kill",
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
