"""The embedded stack launcher (DESIGN.md §5): PostgreSQL + Redis from pip wheels on
free loopback ports, a fault proxy in front of each, extra processes after them.

    from nightly_pipeline.testbed.stack import EmbeddedStack, StackConfig
    with EmbeddedStack(StackConfig(run_dir=...)) as endpoints: ...

A running stack kills, pauses and restarts its own processes by their handles:
``process_names()``, ``pids()``, ``is_running(name)``, ``signal(name, sig)``,
``restart(name)`` (``process_control``).
"""

from nightly_pipeline.testbed.stack.binaries import (
    PostgresBinaries,
    RedisBinary,
    find_postgres,
    find_redis,
)
from nightly_pipeline.testbed.stack.config import ProcessSpec, ReadyLine, ReadyUrl, StackConfig
from nightly_pipeline.testbed.stack.errors import (
    BinaryNotFoundError,
    PortInUseError,
    ProcessControlError,
    ProcessNotRunningError,
    ReadinessTimeoutError,
    StackConfigError,
    StackError,
    StackStartError,
    TeardownError,
    UnknownProcessError,
)
from nightly_pipeline.testbed.stack.launcher import EmbeddedStack, Endpoints, ProcessFactory
from nightly_pipeline.testbed.stack.up import stack_up_main

__all__ = [
    "BinaryNotFoundError",
    "EmbeddedStack",
    "Endpoints",
    "PortInUseError",
    "PostgresBinaries",
    "ProcessControlError",
    "ProcessFactory",
    "ProcessNotRunningError",
    "ProcessSpec",
    "ReadinessTimeoutError",
    "ReadyLine",
    "ReadyUrl",
    "RedisBinary",
    "StackConfig",
    "StackConfigError",
    "StackError",
    "StackStartError",
    "TeardownError",
    "UnknownProcessError",
    "find_postgres",
    "find_redis",
    "stack_up_main",
]
