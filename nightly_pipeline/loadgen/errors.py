"""Exceptions raised by the load generator.

Network failures during a run are *not* exceptions: the clients return results with an
``error`` kind so the load loop can count them. Exceptions mean misuse or a refused
configuration, and stop the run before any traffic is sent::

    LoadgenError                  base of everything raised by nightly_pipeline.loadgen
    ├── ConfigError               invalid option or URL (also a ValueError)
    └── TargetNotAllowedError     target resolves to a non-loopback address and is not in
                                  allow_hosts (DESIGN.md §8)
"""

from __future__ import annotations

from collections.abc import Sequence


class LoadgenError(Exception):
    """Base class of the load generator's exceptions."""


class ConfigError(LoadgenError, ValueError):
    """An option or URL given to the load generator is invalid."""


class TargetNotAllowedError(LoadgenError):
    """Load would go to a host that is neither loopback nor explicitly allowed."""

    def __init__(self, host: str, addresses: Sequence[str], reason: str = "") -> None:
        self.host = host
        self.addresses = tuple(addresses)
        shown = ", ".join(self.addresses) if self.addresses else "no addresses"
        why = reason or "not every address is loopback (127.0.0.0/8, ::1)"
        super().__init__(
            f"target host {host!r} resolves to {shown}: {why}; load is sent only to "
            f"loopback unless allowed — add it to allow_hosts in the target config"
        )
