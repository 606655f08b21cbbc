"""What a generator fleet's coordinator and its Celery workers say to each other.

One fleet run is a handful of Redis keys under ``nightly:fleet:<run id>:``::

    test        the pickled LoadTest (set by the coordinator before it dispatches)
    out         a list: every worker RPUSHes its messages, the coordinator pops them
    start:<k>   a list: the coordinator pushes the shared start time (epoch s) to worker k
    stop        set to "1" when the workers are to stop early (abort, until(), error)
    alive       the coordinator's heartbeat (expires after silence_limit_s): a worker
                that finds it gone stops its load (no load without a coordinator)

A message is ``(worker index, kind, payload)``, pickled::

    accepted  (host, pid)             the task began on that host
    ready     None                    set up, waiting for the start
    seconds   (snapshots, closed)     the seconds it closed (SecondSnapshot: encoded
                                      HdrHistograms), sent once a second: also a heartbeat
    done      (snapshots, counts)     its last seconds and its iteration counts
    error     text                    it failed; the text names it and why

Why Redis lists and not Celery results: a result arrives once, at the end; the
coordinator needs each closed second as it closes (live thresholds, progress) and a
heartbeat to tell a lost worker from a slow one. Why pickle: a scenario is any
picklable object (loadgen/scenario.py), as for the local worker processes; the broker
must therefore be trusted like the hosts themselves (it is: they run the tests' code).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

PREFIX = "nightly:fleet:"
KEY_TTL_S = 3600
"""Every key expires by itself (a push renews it): a coordinator killed -9 leaves
nothing for long."""
TASK_NAME = "nightly_pipeline.loadgen.fleet_task.run_share"
DEFAULT_QUEUE = "nightly-loadgen"

Message = tuple[int, str, Any]


@dataclass(frozen=True)
class FleetSettings:
    """Where a test's load is generated when not on this host: Celery workers consuming
    ``queue`` on the Redis at ``broker_url`` (broker, result backend and message channel).

    Start one worker per generator host, one task at a time each::

        celery -A nightly_pipeline.loadgen.fleet_task -b redis://HOST:6379/0 \\
            worker -Q nightly-loadgen -c 1
    """

    broker_url: str
    queue: str = DEFAULT_QUEUE
    ready_timeout_s: float = 60.0
    """Every worker must have set up its share within this long of the dispatch."""
    silence_limit_s: float = 15.0
    """A worker that sends nothing (not even its once-a-second report) for this long
    is lost: the run stops with an error naming it."""
    start_margin_s: float = 1.0
    """Between the start message and the first arrival (it crosses the network)."""

    def errors(self) -> list[str]:
        problems = []
        if not self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            problems.append(f"fleet broker_url must be a redis:// URL, got {self.broker_url!r}")
        for name in ("ready_timeout_s", "silence_limit_s", "start_margin_s"):
            if not 0 < getattr(self, name) <= 3600:
                problems.append(f"fleet {name} must be in (0, 3600], got {getattr(self, name)}")
        if self.silence_limit_s < 2:
            problems.append("fleet silence_limit_s must be >= 2 (workers report once a second)")
        return problems


@dataclass(frozen=True)
class FleetKeys:
    """The Redis keys of one fleet run."""

    run_id: str

    @property
    def test(self) -> str:
        return f"{PREFIX}{self.run_id}:test"

    @property
    def out(self) -> str:
        return f"{PREFIX}{self.run_id}:out"

    @property
    def stop(self) -> str:
        return f"{PREFIX}{self.run_id}:stop"

    @property
    def alive(self) -> str:
        return f"{PREFIX}{self.run_id}:alive"

    def start(self, index: int) -> str:
        return f"{PREFIX}{self.run_id}:start:{index}"

    def every(self, count: int) -> list[str]:
        starts = (self.start(i) for i in range(count))
        return [self.test, self.out, self.stop, self.alive, *starts]


def encode(index: int, kind: str, payload: Any) -> bytes:
    return pickle.dumps((index, kind, payload), protocol=pickle.HIGHEST_PROTOCOL)


def decode(blob: bytes) -> Message:
    index, kind, payload = pickle.loads(blob)
    return int(index), str(kind), payload
