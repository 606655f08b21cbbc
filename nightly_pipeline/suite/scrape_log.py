"""Every ``/metrics`` scrape of a run, kept as changes: memory grows with what the target
*changed*, not with what it exposes every second (Issue 15: a dict per scrape cost
~47 KiB a second, ~85 MB over a 30-minute soak).

A scrape's samples are interned per endpoint: each (sample name, labels) key is stored
once, with the scrape numbers at which its value (or its presence) changed. Most of an
exposition does not move from one second to the next (idle histograms' buckets, sizes,
``*_created``), so a key costs 13 bytes per change instead of a dict entry, a float and a
key tuple per scrape. The order of a scrape's samples (its layout) is kept only when it
changes, so a scrape read back is its original, sample for sample and in order: every
check reads exactly what it read before (``tests/suite/test_scrape_log.py``).

Reading is by scrape (``ScrapeLog`` is a ``Sequence[Scrape]``); ``Scrape.total`` and
``by_label`` look at the keys of one sample name only (``named``), not the whole
exposition.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    from nightly_pipeline.suite.sampling import MetricKey, Scrape

Tags = tuple[tuple[str, str], ...]


def _same(a: float, b: float) -> bool:
    """The same reading: NaN repeated is no change, 0.0 after -0.0 is one."""
    if a == b:
        return math.copysign(1.0, a) == math.copysign(1.0, b)
    return math.isnan(a) and math.isnan(b)


class _Layout:
    """The keys of one endpoint's scrape, in exposition order; shared by the scrapes
    that had the same ones."""

    __slots__ = ("order", "position")

    def __init__(self, order: array) -> None:
        self.order = order
        self.position = {key: at for at, key in enumerate(order)}


class _Endpoint:
    """One endpoint's keys and each key's changes (scrape number, value)."""

    def __init__(self) -> None:
        self.keys: list[MetricKey] = []
        self.index: dict[MetricKey, int] = {}
        self.by_name: dict[str, list[int]] = {}
        self.changed_at: list[array] = []  # per key: scrape numbers ('I')
        self.values: list[array] = []  # per key: the value from that scrape on ('d')
        self.last: list[float] = []
        self.layout: _Layout | None = None

    def add(self, number: int, samples: Mapping[MetricKey, float]) -> _Layout:
        order = array("I")
        for key, value in samples.items():
            i = self.index.get(key)
            if i is None:
                i = self.index[key] = len(self.keys)
                self.keys.append(key)
                self.by_name.setdefault(key[0], []).append(i)
                self.changed_at.append(array("I"))
                self.values.append(array("d"))
                self.last.append(math.nan)
            value = float(value)
            if not self.changed_at[i] or not _same(self.last[i], value):
                self.changed_at[i].append(number)
                self.values[i].append(value)
                self.last[i] = value
            order.append(i)
        if self.layout is None or self.layout.order != order:
            self.layout = _Layout(order)
        return self.layout

    def value(self, key: int, number: int) -> float:
        """The key's value at scrape ``number`` (the key is in that scrape's layout)."""
        at = bisect.bisect_right(self.changed_at[key], number) - 1
        return self.values[key][at]

    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for a in (*self.changed_at, *self.values))


class _Samples(Mapping["MetricKey", float]):
    """One endpoint's samples of one scrape, read back from the log."""

    __slots__ = ("_endpoint", "_layout", "_number")

    def __init__(self, endpoint: _Endpoint, layout: _Layout, number: int) -> None:
        self._endpoint, self._layout, self._number = endpoint, layout, number

    def __getitem__(self, key: MetricKey) -> float:
        i = self._endpoint.index.get(key)
        if i is None or i not in self._layout.position:
            raise KeyError(key)
        return self._endpoint.value(i, self._number)

    def __iter__(self) -> Iterator[MetricKey]:
        keys = self._endpoint.keys
        return (keys[i] for i in self._layout.order)

    def __len__(self) -> int:
        return len(self._layout.order)

    def items(self) -> Iterator[tuple[MetricKey, float]]:  # type: ignore[override]
        endpoint, number = self._endpoint, self._number
        return ((endpoint.keys[i], endpoint.value(i, number)) for i in self._layout.order)

    def named(self, name: str) -> list[tuple[Tags, float]]:
        """``(labels, value)`` of the samples called ``name``, in exposition order."""
        position = self._layout.position
        found = sorted(
            (position[i], i) for i in self._endpoint.by_name.get(name, ()) if i in position
        )
        return [
            (self._endpoint.keys[i][1], self._endpoint.value(i, self._number)) for _, i in found
        ]


class ScrapeLog(Sequence["Scrape"]):
    """The scrapes of a run, appended as they come, read back as ``Scrape`` objects."""

    def __init__(self) -> None:
        self._endpoints: dict[str, _Endpoint] = {}
        self._at = array("d")
        self._answered: list[tuple[tuple[str, _Layout], ...]] = []
        self._errors: dict[int, Mapping[str, str]] = {}  # only the scrapes that had some

    def append(self, scrape: Scrape) -> None:
        number = len(self._at)
        answered = []
        for name, samples in scrape.values.items():
            endpoint = self._endpoints.get(name)
            if endpoint is None:
                endpoint = self._endpoints[name] = _Endpoint()
            answered.append((name, endpoint.add(number, samples)))
        previous = self._answered[-1] if self._answered else ()
        together = tuple(answered)
        same = len(previous) == len(together) and all(
            a[0] == b[0] and a[1] is b[1] for a, b in zip(previous, together, strict=True)
        )
        self._answered.append(previous if same else together)
        if scrape.errors:
            self._errors[number] = dict(scrape.errors)
        self._at.append(scrape.at)

    def __len__(self) -> int:
        return len(self._at)

    @overload
    def __getitem__(self, index: int) -> Scrape: ...
    @overload
    def __getitem__(self, index: slice) -> list[Scrape]: ...
    def __getitem__(self, index: int | slice) -> Scrape | list[Scrape]:
        if isinstance(index, slice):
            return [self._scrape(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._scrape(index)

    def __iter__(self) -> Iterator[Scrape]:
        return (self._scrape(i) for i in range(len(self)))

    def _scrape(self, number: int) -> Scrape:
        from nightly_pipeline.suite.sampling import Scrape

        values = {
            name: _Samples(self._endpoints[name], layout, number)
            for name, layout in self._answered[number]
        }
        return Scrape(self._at[number], values, self._errors.get(number, {}))

    def nbytes(self) -> int:
        """The bytes of the changes kept (the keys and layouts not counted)."""
        return sum(e.nbytes() for e in self._endpoints.values()) + self._at.itemsize * len(self._at)
