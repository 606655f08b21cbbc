"""The proxy fault interface (Toxiproxy's "toxic"), its per-link handle, wrapper and registry.

A fault is one toxic type: a frozen dataclass whose fields are its Toxiproxy attributes,
with ``pipe(chunk, stub, emit)`` called for every chunk crossing one stream of a link. It
passes bytes on with ``await emit(chunk)`` (zero, one or several times, possibly after
sleeping), and may also act when the stream's source closes (``eof``) or when it takes
effect on a link (``start``: timers). It closes the link by raising :class:`LinkAbort`.
One fault per module, registered by type name with :func:`register`; ``noop`` is the control.

Cross-cutting knobs live in :class:`FaultSlot`, not in the faults: the name a toxic is known
by, its ``stream`` (``upstream``: client → server, ``downstream``: server → client) and its
``toxicity`` (the probability that a given link is affected, drawn per link as Toxiproxy does).

Per link and stream, a fault sees a :class:`Stub`: per-link state, sleeps that end early when
the toxic is removed (so a toxic removed while live flushes what it holds and never drops
data), timers cancelled with it, and the means to close the link.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Stream = Literal["upstream", "downstream"]
STREAMS: tuple[Stream, ...] = ("upstream", "downstream")


class LinkAbort(Exception):
    """Raised by a fault to close its link: with FIN, or with a TCP RST when ``reset``."""

    def __init__(self, reason: str = "", *, reset: bool = False) -> None:
        super().__init__(reason)
        self.reset = reset


@dataclass(frozen=True)
class Chunk:
    """Bytes read from one side of a link and the loop time they count from."""

    data: bytes
    arrived: float


@dataclass(frozen=True)
class LinkInfo:
    """What a fault may know about the link it pipes."""

    link_id: int
    stream: Stream
    client: str


Emit = Callable[[Chunk], Awaitable[None]]


class Fault(ABC):
    """One toxic type. Instances are built from JSON attributes and shared by all links."""

    type_name: ClassVar[str]

    @classmethod
    def from_attributes(cls, attributes: Mapping[str, Any]) -> Fault:
        """Build from Toxiproxy's JSON attributes (missing ones default, as Toxiproxy's do);
        raise ``ValueError`` naming every bad attribute."""
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        errors = []
        unknown = sorted(set(attributes) - set(known))
        if unknown:
            takes = ", ".join(known) or "no attributes"
            errors.append(f"unknown attributes {unknown} ({cls.type_name} takes {takes})")
        values: dict[str, Any] = {}
        for name, value in attributes.items():
            if name not in known:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(f"{name} must be a number, got {value!r}")
            elif value < 0:
                errors.append(f"{name} must be >= 0, got {value}")
            elif known[name].type in ("int", int) and not float(value).is_integer():
                errors.append(f"{name} must be an integer, got {value}")
            else:
                values[name] = int(value) if known[name].type in ("int", int) else value
        if not errors:
            fault = cls(**values)
            errors = fault.validate()
            if not errors:
                return fault
        raise ValueError(f"toxic {cls.type_name!r}: {'; '.join(errors)}")

    def validate(self) -> list[str]:
        """Every problem across attributes (each is already a number >= 0)."""
        return []

    def attributes(self) -> dict[str, Any]:
        """Every attribute, defaults included (Toxiproxy's ``attributes``)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def start(self, stub: Stub) -> None:
        """Called when the toxic takes effect on a link's stream (link opened, toxic added
        or updated): the place to set timers with ``stub.later``."""
        return

    @abstractmethod
    async def pipe(self, chunk: Chunk, stub: Stub, emit: Emit) -> None:
        """Pass ``chunk`` on with ``await emit(...)``, as is, changed, split or later."""

    async def eof(self, stub: Stub) -> None:
        """The stream's source closed; return to pass the close on."""
        return


_REGISTRY: dict[str, type[Fault]] = {}


def register(cls: type[Fault]) -> type[Fault]:
    """Class decorator: make ``cls`` available by its ``type_name``."""
    if cls.type_name in _REGISTRY and _REGISTRY[cls.type_name] is not cls:
        raise ValueError(f"fault type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def fault_types() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def build_fault(type_name: str, attributes: Mapping[str, Any] | None = None) -> Fault:
    try:
        cls = _REGISTRY[type_name]
    except KeyError:
        raise ValueError(
            f"unknown toxic type {type_name!r}; known: {', '.join(fault_types())}"
        ) from None
    return cls.from_attributes(dict(attributes or {}))


@dataclass
class FaultSlot:
    """A named toxic installed on a proxy, with its stream and toxicity."""

    name: str
    fault: Fault
    stream: Stream = "downstream"
    toxicity: float = 1.0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        errors = []
        if not self.name or "/" in self.name:
            errors.append(f"name must be non-empty without '/', got {self.name!r}")
        if self.stream not in STREAMS:
            errors.append("stream was invalid, can be either upstream or downstream")
        if isinstance(self.toxicity, bool) or not 0.0 <= self.toxicity <= 1.0:
            errors.append(f"toxicity must be within [0, 1], got {self.toxicity}")
        if errors:
            raise ValueError("; ".join(errors))

    def draw(self) -> bool:
        """Whether a link is affected (drawn per link and stream, as Toxiproxy does)."""
        return self._rng.random() < self.toxicity

    def describe(self) -> dict[str, Any]:
        """Toxiproxy's toxic JSON."""
        return {
            "name": self.name,
            "type": self.fault.type_name,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": self.fault.attributes(),
        }


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class Stub:
    """One toxic on one stream of one link (Toxiproxy's ``ToxicStub``)."""

    def __init__(
        self,
        slot: FaultSlot,
        info: LinkInfo,
        close_link: Callable[[bool], None],
        last_arrival: Callable[[], float],
    ) -> None:
        self.slot = slot
        self.info = info
        self.state: dict[str, Any] = {}  # the fault's per-link state; kept across updates
        self._close_link = close_link
        self._last_arrival = last_arrival
        self._loop = asyncio.get_running_loop()
        self._removed = False
        self._waiters: set[asyncio.Future[bool]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self.affected = False
        self.started_at = 0.0

    @property
    def fault(self) -> Fault:
        return self.slot.fault

    @property
    def removed(self) -> bool:
        return self._removed

    @property
    def active(self) -> bool:
        """Whether the toxic acts on this link now (drawn in, and not removed)."""
        return self.affected and not self._removed

    def begin(self, slot: FaultSlot | None = None) -> None:
        """(Re)start under ``slot``: draw toxicity, restart timers. Called by the link; on
        an update, sleepers are interrupted (as Toxiproxy interrupts a toxic to update it)
        and pass on what they hold unless the toxic still holds it (``active``)."""
        self._cancel_timers()
        self._wake()
        self.slot = slot or self.slot
        self.affected = self.slot.draw()
        self.started_at = self._loop.time()
        if self.affected:
            self.fault.start(self)

    def remove(self) -> None:
        """The toxic is gone from this link: wake every sleeper (they flush), stop timers."""
        self._removed = True
        self._cancel_timers()
        self._wake()

    async def wait(self, seconds: float | None) -> bool:
        """Sleep ``seconds`` (``None``: until interrupted). True when the time passed, False
        as soon as the toxic is removed or updated: the caller then passes on what it holds."""
        if self._removed:
            return False
        if seconds is not None and seconds <= 0:
            return True
        future: asyncio.Future[bool] = self._loop.create_future()
        handle = None if seconds is None else self._loop.call_later(seconds, _settle, future, True)
        self._waiters.add(future)
        try:
            return await future
        finally:
            if handle is not None:
                handle.cancel()
            self._waiters.discard(future)

    def later(self, seconds: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in ``seconds`` unless the toxic is removed or updated first."""
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            callback()

        handle = self._loop.call_later(seconds, fire)
        self._timers.add(handle)

    def now(self) -> float:
        return self._loop.time()

    def last_arrival(self) -> float:
        """Loop time of the last bytes read on this stream (0 before any)."""
        return self._last_arrival()

    def close_link(self, *, reset: bool = False) -> None:
        """Close the whole link now (FIN, or RST with ``reset``); held data is discarded."""
        self._close_link(reset)

    def _wake(self) -> None:
        for future in list(self._waiters):
            _settle(future, False)

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
