"""``pause``: SIGSTOP a platform process (a long GC pause, a frozen VM: its sockets stay
open, nothing answers); reverting sends SIGCONT. A run killed meanwhile leaves the
process stopped: the next start's ledger sends the SIGCONT (same pid and start time)."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.platform_faults.base import register
from nightly_pipeline.chaos.platform_faults.process import (
    ProcessFault,
    process_identity,
    same_process,
)


@register
class Pause(ProcessFault):
    type_name = "pause"

    def inject(self) -> None:
        self._identity = process_identity(self.backend.pids()[self.process])
        self._signal(signal.SIGSTOP)
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            self.backend.signal(self.process, signal.SIGCONT)
            self.injected = False

    def leftover(self) -> dict[str, Any]:
        return dict(self._identity)

    @classmethod
    def revert_leftover(cls, leftover: Mapping[str, Any]) -> str:
        proc = same_process(dict(leftover))
        if proc is None:
            return f"pid {leftover.get('pid')} is gone: nothing to resume"
        proc.send_signal(signal.SIGCONT)
        return f"sent SIGCONT to pid {proc.pid}"
