"""The Docker platform's container handles for the Docker faults
(``chaos.backend.ContainerBackend``): network disconnect/connect, ``docker update`` of
CPU and memory, a command run inside as root (``tc``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    import docker.models.containers
    import docker.models.networks

CPU_PERIOD = 100_000  # microseconds


class ContainerHandles:
    """Mixed into ``DockerPlatform``: its containers by service name, on its network."""

    network_name: str
    _network: docker.models.networks.Network | None

    def container(self, name: str) -> docker.models.containers.Container:
        raise NotImplementedError

    def disconnect(self, name: str) -> None:
        """``docker network disconnect`` (forced: a paused or stopped one too)."""
        assert self._network is not None
        self._network.disconnect(self.container(name), force=True)

    def connect(self, name: str) -> None:
        """Attach the container again under its service name; nothing if attached."""
        assert self._network is not None
        container = self.container(name)
        container.reload()
        if self.network_name in container.attrs["NetworkSettings"]["Networks"]:
            return
        self._network.connect(container, aliases=[name])

    def limits(self, name: str) -> tuple[float, int]:
        container = self.container(name)
        container.reload()
        host = container.attrs["HostConfig"]
        quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 100_000
        cpus = host.get("NanoCpus", 0) / 1e9 or (quota / period if quota > 0 else 0.0)
        return cpus, int(host.get("Memory") or 0)

    def set_limits(self, name: str, cpus: float, memory_bytes: int) -> None:
        """CPU quota per 100 ms period (-1: none); memory with swap equal to it (no swap
        beyond the limit). Docker cannot lift a memory limit once set: 0 sets it to the
        host's memory, which is no limit in effect."""
        memory = memory_bytes or psutil.virtual_memory().total
        quota = int(cpus * CPU_PERIOD) if cpus > 0 else -1
        self.container(name).update(
            cpu_period=CPU_PERIOD, cpu_quota=quota, mem_limit=memory, memswap_limit=memory
        )

    def exec_root(self, name: str, argv: list[str]) -> tuple[int, str]:
        code, out = self.container(name).exec_run(argv, user="root")
        return int(code), out.decode(errors="replace") if isinstance(out, bytes) else str(out)
