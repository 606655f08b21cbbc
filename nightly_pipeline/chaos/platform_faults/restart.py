"""``restart``: stop a platform process and start it again at the same addresses (a
deploy, an OOM kill with a supervisor): nothing to revert."""

from __future__ import annotations

from nightly_pipeline.chaos.platform_faults.base import FaultError, register
from nightly_pipeline.chaos.platform_faults.process import ProcessFault


@register
class Restart(ProcessFault):
    type_name = "restart"

    def inject(self) -> None:
        name = self.process
        try:
            self.backend.restart(name)
        except Exception as exc:
            raise FaultError(f"restart: cannot restart {name}: {exc}") from exc
        self.injected = True
