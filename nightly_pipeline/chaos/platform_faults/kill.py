"""``kill``: SIGKILL a platform process (a crash: no cleanup, its work in flight lost
or pending); reverting starts it again at the same addresses."""

from __future__ import annotations

import signal

from nightly_pipeline.chaos.platform_faults.base import register
from nightly_pipeline.chaos.platform_faults.process import ProcessFault


@register
class Kill(ProcessFault):
    type_name = "kill"

    def inject(self) -> None:
        self._signal(signal.SIGKILL)
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            self._restart_if_down()
            self.injected = False
