"""``terminate``: SIGTERM a platform process (an orderly stop: it may finish what it
holds); reverting starts it again at the same addresses."""

from __future__ import annotations

import signal

from nightly_pipeline.chaos.platform_faults.base import register
from nightly_pipeline.chaos.platform_faults.process import ProcessFault


@register
class Terminate(ProcessFault):
    type_name = "terminate"

    def inject(self) -> None:
        self._signal(signal.SIGTERM)
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            self._restart_if_down()
            self.injected = False
