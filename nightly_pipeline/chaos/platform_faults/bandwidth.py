"""``bandwidth``: a container's outgoing traffic shaped by a token bucket (``tc qdisc
... tbf`` on its ``eth0``, run inside it as root; the kernels here have no ``sch_netem``,
so no delay or loss), a congested uplink; reverting deletes the qdisc. Toxiproxy's
``bandwidth`` toxic does the same per link on the proxies; this one is the kernel's,
for every connection of the container."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.platform_faults.base import FaultError, register
from nightly_pipeline.chaos.platform_faults.container import ContainerFault

DEVICE = "eth0"


@register
class Bandwidth(ContainerFault):
    type_name = "bandwidth"
    params_allowed = frozenset({"process", "rate_kbit", "burst_kb", "latency_ms"})

    def __init__(self, backend: Any, params: Mapping[str, Any]) -> None:
        super().__init__(backend, params)
        self.rate = int(self._require("rate_kbit"))
        self.burst = int(self.params.get("burst_kb", 32))
        self.latency = int(self.params.get("latency_ms", 400))
        if min(self.rate, self.burst, self.latency) <= 0:
            raise ValueError("fault 'bandwidth': rate_kbit, burst_kb and latency_ms must be > 0")

    def inject(self) -> None:
        argv = ["tc", "qdisc", "add", "dev", DEVICE, "root", "tbf", "rate", f"{self.rate}kbit"]
        argv += ["burst", f"{self.burst}kb", "latency", f"{self.latency}ms"]
        containers, name = self.containers, self.process
        code, out = containers.exec_root(name, argv)
        if code != 0:
            raise FaultError(f"bandwidth on {name}: `{' '.join(argv)}` failed: {out}")
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            self.containers.exec_root(self.process, ["tc", "qdisc", "del", "dev", DEVICE, "root"])
            self.injected = False
