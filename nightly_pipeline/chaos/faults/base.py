"""The proxy fault interface (Toxiproxy's "toxic"), its wrapper and its registry.

A fault sees every chunk that crosses a link in one direction and decides what goes on:
the same bytes, other bytes, nothing (``b""``), later (it may sleep), or it aborts the
link by raising :class:`LinkAbort`. One fault per module, registered by name with
:func:`register`; ``noop`` is the control.

Cross-cutting knobs live in :class:`FaultSlot`, not in the faults: the name a slot is
known by, the direction it applies to and its toxicity (the probability that a given
link is affected, drawn once per link as Toxiproxy does).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Direction = Literal["upstream", "downstream", "both"]
DIRECTIONS: tuple[Direction, ...] = ("upstream", "downstream", "both")


class LinkAbort(Exception):
    """Raised by a fault to close the link it is piping (both directions)."""


@dataclass(frozen=True)
class Chunk:
    """Bytes read from one side of a link and the loop time they were read at."""

    data: bytes
    arrived: float


@dataclass(frozen=True)
class LinkInfo:
    """What a fault may know about the link it pipes."""

    link_id: int
    direction: Literal["upstream", "downstream"]
    client: str


class Fault(ABC):
    """One fault type. Instances are built from JSON params and shared by all links."""

    type_name: ClassVar[str]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Fault:
        """Build from the JSON params; raise ``ValueError`` naming every bad param."""
        if params:
            raise ValueError(f"fault {cls.type_name!r} takes no params, got {sorted(params)}")
        return cls()

    @abstractmethod
    async def pipe(self, chunk: Chunk, link: LinkInfo) -> bytes:
        """Return the bytes to forward for ``chunk`` (``b""`` drops them)."""

    def params(self) -> dict[str, Any]:
        """The params this fault was built with (for ``GET /status``)."""
        return {}


_REGISTRY: dict[str, type[Fault]] = {}


def register(cls: type[Fault]) -> type[Fault]:
    """Class decorator: make ``cls`` available by its ``type_name``."""
    if cls.type_name in _REGISTRY and _REGISTRY[cls.type_name] is not cls:
        raise ValueError(f"fault type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def fault_types() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def build_fault(type_name: str, params: Mapping[str, Any] | None = None) -> Fault:
    try:
        cls = _REGISTRY[type_name]
    except KeyError:
        raise ValueError(
            f"unknown fault type {type_name!r}; known: {', '.join(fault_types())}"
        ) from None
    return cls.from_params(dict(params or {}))


@dataclass
class FaultSlot:
    """A named fault installed on a proxy, with its direction and toxicity."""

    name: str
    fault: Fault
    direction: Direction = "downstream"
    toxicity: float = 1.0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        errors = []
        if not self.name:
            errors.append("name must not be empty")
        if self.direction not in DIRECTIONS:
            errors.append(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if not 0.0 <= self.toxicity <= 1.0:
            errors.append(f"toxicity must be within [0, 1], got {self.toxicity}")
        if errors:
            raise ValueError("; ".join(errors))

    def applies_to(self, direction: str) -> bool:
        return self.direction in ("both", direction)

    def draw(self) -> bool:
        """Whether a new link is affected (drawn once per link and direction)."""
        return self.toxicity >= 1.0 or self._rng.random() < self.toxicity

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.fault.type_name,
            "direction": self.direction,
            "toxicity": self.toxicity,
            "params": self.fault.params(),
        }
