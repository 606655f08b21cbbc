"""The link faults' common part: a proxy of the platform (Toxiproxy's word) found by
name among the backend's control servers, driven over Toxiproxy's HTTP API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos.control import ProxyControl, ProxyControlError
from nightly_pipeline.chaos.platform_faults.base import FaultError, PlatformFault


class LinkFault(PlatformFault):
    params_allowed = frozenset({"proxy"})

    @property
    def proxy(self) -> str:
        return str(self._require("proxy"))

    def _control(self) -> ProxyControl:
        controls = self.backend.link_controls()
        if self.proxy not in controls:
            known = ", ".join(sorted(controls)) or "none"
            raise ValueError(f"fault {self.type_name!r}: no proxy {self.proxy!r}; known: {known}")
        return ProxyControl(controls[self.proxy], proxy=self.proxy)

    def _leftover(self, **extra: Any) -> dict[str, Any]:
        return {"control": self.backend.link_controls()[self.proxy], "proxy": self.proxy, **extra}


def control_of(leftover: Mapping[str, Any]) -> ProxyControl:
    return ProxyControl(str(leftover["control"]), proxy=str(leftover["proxy"]))


def failed(what: str, exc: ProxyControlError) -> FaultError:
    return FaultError(f"{what}: {exc}")
