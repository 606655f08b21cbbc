"""What the platform faults need of a platform under test (``ChaosBackend``): its
processes by name, signalled and restarted through the platform's own handles (never by
name lookups in the process table), the Toxiproxy-compatible control URL of the proxy
in front of each link, and direct addresses of its datastores.

The embedded reference platform implements it (``testbed.embedded.Platform``); a
deployed platform has none, and its chaos tests run the user's own Chaos Toolkit
activities instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable


@runtime_checkable
class ChaosBackend(Protocol):
    def process_names(self) -> tuple[str, ...]:
        """Every process a fault may act on: api, dispatcher, consumer, postgres, redis..."""
        ...

    def pids(self) -> Mapping[str, int]:
        """Name -> current pid (a restart changes it)."""
        ...

    def is_running(self, name: str) -> bool: ...

    def signal(self, name: str, sig: int) -> None:
        """Signal the process through the platform's handle; an error naming it if gone."""
        ...

    def restart(self, name: str) -> int:
        """Start it again at the same addresses (stopping it first if alive); its new pid."""
        ...

    def link_controls(self) -> Mapping[str, str]:
        """Link name ("postgres", "redis") -> the Toxiproxy HTTP API of its proxy."""
        ...

    def datastores(self) -> Mapping[str, str]:
        """Direct addresses of the platform's datastores, bypassing the proxies:
        ``postgres`` (a superuser DSN, for database faults) and ``redis`` (a URL)."""
        ...


class NoHandles:
    """A platform that offers no handle at all (a deployed one): no process to signal, no
    proxy, no datastore address. Only the user's own activities inject faults there."""

    def process_names(self) -> tuple[str, ...]:
        return ()

    def pids(self) -> Mapping[str, int]:
        return {}

    def is_running(self, name: str) -> bool:
        return False

    def signal(self, name: str, sig: int) -> None:
        raise ProcessLookupError(f"{name}: this platform offers no process handles")

    def restart(self, name: str) -> int:
        raise ProcessLookupError(f"{name}: this platform offers no process handles")

    def link_controls(self) -> Mapping[str, str]:
        return {}

    def datastores(self) -> Mapping[str, str]:
        return {}


@runtime_checkable
class ContainerBackend(Protocol):
    """What the Docker faults need beyond ``ChaosBackend``: a platform whose processes
    are containers (``testbed.docker.platform``). The embedded platform has none of it."""

    def disconnect(self, name: str) -> None:
        """Cut the container off the platform's network (every link of it at once)."""
        ...

    def connect(self, name: str) -> None:
        """Attach it again, under its service name (idempotent)."""
        ...

    def limits(self, name: str) -> tuple[float, int]:
        """(CPUs, memory bytes) the container may use now; 0 means no limit."""
        ...

    def set_limits(self, name: str, cpus: float, memory_bytes: int) -> None:
        """``docker update``: 0 lifts that limit."""
        ...

    def exec_root(self, name: str, argv: list[str]) -> tuple[int, str]:
        """Run ``argv`` inside the container as root (e.g. ``tc``); (exit code, output)."""
        ...
