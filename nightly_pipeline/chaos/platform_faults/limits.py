"""``limits``: a container squeezed to ``cpus`` CPUs and/or ``memory_mb`` MiB (``docker
update``: the cgroup's CPU quota and memory limit), as a noisy neighbour or a smaller
instance would; reverting restores the limits it had."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.platform_faults.base import FaultError, register
from nightly_pipeline.chaos.platform_faults.container import ContainerFault

MIB = 1024 * 1024


@register
class Limits(ContainerFault):
    type_name = "limits"
    params_allowed = frozenset({"process", "cpus", "memory_mb"})

    def __init__(self, backend: Any, params: Mapping[str, Any]) -> None:
        super().__init__(backend, params)
        self.cpus = float(self.params.get("cpus", 0))
        self.memory = int(float(self.params.get("memory_mb", 0)) * MIB)
        if self.cpus < 0 or self.memory < 0 or not (self.cpus or self.memory):
            raise ValueError("fault 'limits': give cpus > 0 and/or memory_mb > 0")
        self.before: tuple[float, int] | None = None

    def inject(self) -> None:
        containers, name = self.containers, self.process
        try:
            self.before = containers.limits(name)
            cpus = self.cpus or self.before[0]
            memory = self.memory or self.before[1]
            containers.set_limits(name, cpus, memory)
        except Exception as exc:
            raise FaultError(f"limits on {name}: {exc}") from exc
        self.injected = True

    def revert(self) -> None:
        if self.injected and self.before is not None:
            self.containers.set_limits(self.process, *self.before)
            self.injected = False
