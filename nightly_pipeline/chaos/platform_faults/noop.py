"""``noop``: injects nothing; the control experiment (a chaos test passes with it)."""

from __future__ import annotations

from nightly_pipeline.chaos.platform_faults.base import PlatformFault, register


@register
class Noop(PlatformFault):
    type_name = "noop"

    def inject(self) -> None:
        self.injected = True
