"""Fault injection (DESIGN.md §8: loopback only). Today: the TCP fault proxy, its toxics
(Toxiproxy's, with Toxiproxy's HTTP API) and :class:`ProxyControl`; process faults and the
docker backend come with later issues.

The proxy's own names are imported lazily, so ``python -m nightly_pipeline.chaos.proxy``
does not find its module already imported by this package.
"""

from typing import Any

from nightly_pipeline.chaos.control import ProxyControl, ProxyControlError
from nightly_pipeline.chaos.faults import Fault, FaultSlot, build_fault, fault_types, register

_PROXY_NAMES = ("READY", "FaultExistsError", "FaultProxy", "ProxyConfig", "ProxyStateError")

__all__ = [
    "READY",
    "Fault",
    "FaultExistsError",
    "FaultProxy",
    "FaultSlot",
    "ProxyConfig",
    "ProxyControl",
    "ProxyControlError",
    "ProxyStateError",
    "build_fault",
    "fault_types",
    "register",
]


def __getattr__(name: str) -> Any:
    if name in _PROXY_NAMES:
        from nightly_pipeline.chaos import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
