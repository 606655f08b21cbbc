"""Faults on a running platform (Toxiproxy's toxic, one level up): one fault per module
behind ``inject()`` / ``revert()``, registered by type name, ``noop`` as the control.

A fault is built from JSON params and a ``ChaosBackend``; ``inject`` must leave nothing
half-done when it fails (the test then fails with that cause and injects nothing else);
``revert`` is idempotent and runs in ``finally``. ``leftover()`` describes what stays in
the world while the fault is injected, as JSON, so that a run killed between inject and
revert can be repaired at the next start (``chaos.ledger``) without the run's objects:
``revert_leftover(leftover)`` does that from the description alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from nightly_pipeline.chaos.backend import ChaosBackend


class FaultError(RuntimeError):
    """A fault could not be injected or reverted; the message names the target and why."""


class PlatformFault(ABC):
    type_name: ClassVar[str]
    params_allowed: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backend: ChaosBackend, params: Mapping[str, Any]) -> None:
        unknown = sorted(set(params) - self.params_allowed)
        if unknown:
            raise ValueError(
                f"fault {self.type_name!r}: unknown params {unknown}; "
                f"allowed: {sorted(self.params_allowed)}"
            )
        self.backend = backend
        self.params = dict(params)
        self.injected = False

    @abstractmethod
    def inject(self) -> None:
        """Apply the fault; raise ``FaultError`` (having applied nothing) if it cannot."""

    def revert(self) -> None:  # noqa: B027 - most faults have something to undo; some not
        """Undo it; a no-op when not injected or when there is nothing to undo."""

    def leftover(self) -> dict[str, Any]:
        """What stays applied while injected, enough for ``revert_leftover``."""
        return {}

    @classmethod
    def revert_leftover(cls, leftover: Mapping[str, Any]) -> str:
        """Undo a dead run's fault from its ``leftover()``; what was done, for the log."""
        return "nothing to revert"

    def describe(self) -> dict[str, Any]:
        return {"type": self.type_name, "params": self.params}

    def _require(self, key: str) -> Any:
        if key not in self.params:
            raise ValueError(f"fault {self.type_name!r}: param {key!r} is required")
        return self.params[key]


_REGISTRY: dict[str, type[PlatformFault]] = {}


def register(cls: type[PlatformFault]) -> type[PlatformFault]:
    """Class decorator: make ``cls`` available by its ``type_name``."""
    if cls.type_name in _REGISTRY and _REGISTRY[cls.type_name] is not cls:
        raise ValueError(f"platform fault type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def fault_types() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def fault_class(type_name: str) -> type[PlatformFault]:
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise ValueError(
            f"unknown platform fault {type_name!r}; known: {', '.join(fault_types())}"
        ) from None


def build(type_name: str, backend: ChaosBackend, params: Mapping[str, Any]) -> PlatformFault:
    return fault_class(type_name)(backend, params)
