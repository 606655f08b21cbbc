"""``link_down``: a proxy disabled (Toxiproxy's "down" state): every connection through
it closed and new ones refused, a network partition between a process and a datastore;
reverting enables it again on the same port."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.control import ProxyControlError
from nightly_pipeline.chaos.platform_faults.base import register
from nightly_pipeline.chaos.platform_faults.link import LinkFault, control_of, failed


@register
class LinkDown(LinkFault):
    type_name = "link_down"

    def inject(self) -> None:
        with self._control() as control:
            try:
                control.cut()
            except ProxyControlError as exc:
                raise failed(f"link_down {self.proxy}", exc) from exc
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            with self._control() as control:
                control.restore()
            self.injected = False

    def leftover(self) -> dict[str, Any]:
        return self._leftover()

    @classmethod
    def revert_leftover(cls, leftover: Mapping[str, Any]) -> str:
        with control_of(leftover) as control:
            control.restore()
        return f"proxy {leftover['proxy']} enabled again"
