"""``partition``: a TCP port cut off by the kernel, no proxy involved — iptables DROP (the
peers' packets vanish: connections hang until their timeouts) or REJECT with a TCP reset
(connections refused, open ones reset). Both directions are cut: packets to the port and
the port's replies.

Without ``netns`` the rules match loopback traffic only (``-i lo``), so the fault cannot
reach beyond this machine; with ``netns`` they go into that network namespace (a service
run inside one, reached over a veth pair). ``proxy`` names a link of the platform instead
of a port: its listening port is cut in the kernel while the proxy itself is left as is.
Reverting deletes exactly the rules added; a run killed meanwhile leaves them in the
ledger, and the next start deletes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from nightly_pipeline.chaos import iptables
from nightly_pipeline.chaos.control import ProxyControl, ProxyControlError
from nightly_pipeline.chaos.platform_faults.base import FaultError, PlatformFault, register

MODES = {"drop": ["-j", "DROP"], "reject": ["-j", "REJECT", "--reject-with", "tcp-reset"]}
CHAIN = "INPUT"


@register
class Partition(PlatformFault):
    type_name = "partition"
    params_allowed = frozenset({"port", "proxy", "mode", "netns"})

    def __init__(self, backend: Any, params: Mapping[str, Any]) -> None:
        super().__init__(backend, params)
        self.mode = str(self.params.get("mode", "drop"))
        if self.mode not in MODES:
            raise ValueError(f"fault 'partition': mode must be one of {sorted(MODES)}")
        if ("port" in self.params) == ("proxy" in self.params):
            raise ValueError("fault 'partition': give exactly one of 'port' or 'proxy'")
        self.netns = self.params.get("netns") or None
        self.rules: list[list[str]] = []

    def inject(self) -> None:
        port = self._port()
        rules = _rules(port, self.mode, loopback_only=self.netns is None)
        added: list[list[str]] = []
        try:
            for rule in rules:
                iptables.add(CHAIN, rule, self.netns)
                added.append(rule)
        except iptables.IptablesError as exc:
            for rule in added:
                iptables.delete(CHAIN, rule, self.netns)
            raise FaultError(f"partition of port {port}: {exc}") from exc
        self.rules = added
        self.injected = True

    def revert(self) -> None:
        if self.injected:
            for rule in self.rules:
                iptables.delete(CHAIN, rule, self.netns)
            self.injected = False

    def leftover(self) -> dict[str, Any]:
        return {"netns": self.netns, "rules": self.rules}

    @classmethod
    def revert_leftover(cls, leftover: Mapping[str, Any]) -> str:
        netns = leftover.get("netns")
        removed = sum(iptables.delete(CHAIN, rule, netns) for rule in leftover.get("rules", []))
        return f"{removed} iptables rule(s) of a partition deleted"

    def _port(self) -> int:
        if "port" in self.params:
            port = int(self.params["port"])
        else:
            port = _listen_port(self.backend.link_controls(), str(self.params["proxy"]))
        if not 0 < port < 65536:
            raise ValueError(f"fault 'partition': port {port} is not a TCP port")
        return port


def _rules(port: int, mode: str, loopback_only: bool) -> list[list[str]]:
    """Both directions of ``port``, tagged with this process's pid (for the operator)."""
    where = ["-i", "lo"] if loopback_only else []
    tag = ["-m", "comment", "--comment", f"{iptables.TAG} pid={os.getpid()}"]
    return [
        [*where, "-p", "tcp", "--dport", str(port), *tag, *MODES[mode]],
        # the port's replies, except the resets a REJECT itself sends on the port's behalf
        [*where, "-p", "tcp", "--sport", str(port), "!", "--tcp-flags", "RST", "RST", *tag]
        + MODES[mode],
    ]


def _listen_port(controls: Mapping[str, str], proxy: str) -> int:
    if proxy not in controls:
        known = ", ".join(sorted(controls)) or "none"
        raise ValueError(f"fault 'partition': no proxy {proxy!r}; known: {known}")
    try:
        with ProxyControl(controls[proxy], proxy=proxy) as control:
            listen = str(control.proxy()["listen"])
    except ProxyControlError as exc:
        raise FaultError(f"partition of proxy {proxy}: {exc}") from exc
    return int(listen.rsplit(":", 1)[1])
