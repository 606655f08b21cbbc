"""``link_toxic``: one of Toxiproxy's toxics on a proxy of the platform (latency,
bandwidth, timeout, reset_peer, slicer, limit_data, slow_close), with its stream and
toxicity: a slow, lossy or stalling link; reverting removes it (what it holds is
delivered, not dropped)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.control import ProxyControlError
from nightly_pipeline.chaos.platform_faults.base import register
from nightly_pipeline.chaos.platform_faults.link import LinkFault, control_of, failed


@register
class LinkToxic(LinkFault):
    type_name = "link_toxic"
    params_allowed = frozenset({"proxy", "toxic", "stream", "toxicity", "attributes"})

    def inject(self) -> None:
        self.toxic_name = f"nightly_{uuid.uuid4().hex[:8]}"
        with self._control() as control:
            try:
                control.add_toxic(
                    str(self._require("toxic")),
                    name=self.toxic_name,
                    stream=self.params.get("stream", "downstream"),
                    toxicity=float(self.params.get("toxicity", 1.0)),
                    **dict(self.params.get("attributes", {})),
                )
            except ProxyControlError as exc:
                raise failed(f"link_toxic {self.params['toxic']} on {self.proxy}", exc) from exc
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            with self._control() as control:
                control.remove_toxic(self.toxic_name)
            self.injected = False

    def leftover(self) -> dict[str, Any]:
        return self._leftover(toxic=self.toxic_name)

    @classmethod
    def revert_leftover(cls, leftover: Mapping[str, Any]) -> str:
        with control_of(leftover) as control:
            try:
                control.remove_toxic(str(leftover["toxic"]))
            except ProxyControlError as exc:
                if exc.status != 404:
                    raise
                return f"toxic {leftover['toxic']} already gone"
        return f"toxic {leftover['toxic']} removed from proxy {leftover['proxy']}"
