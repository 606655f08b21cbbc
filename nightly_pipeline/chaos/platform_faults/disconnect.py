"""``disconnect``: a container cut off the platform's network (``docker network
disconnect``): every link of it fails at once, as a host whose cable is pulled; its
process keeps running. Reverting attaches it again under its service name."""

from __future__ import annotations

from nightly_pipeline.chaos.platform_faults.base import FaultError, register
from nightly_pipeline.chaos.platform_faults.container import ContainerFault


@register
class Disconnect(ContainerFault):
    type_name = "disconnect"

    def inject(self) -> None:
        containers, name = self.containers, self.process
        try:
            containers.disconnect(name)
        except Exception as exc:
            raise FaultError(f"disconnect {name}: {exc}") from exc
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            self.containers.connect(self.process)
            self.injected = False
