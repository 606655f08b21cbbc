"""The load generator's memory over Test 01 (message soak) or 04: RSS at 1, 10 min and the end.

    . .venv/bin/activate && python bench/generator_memory.py [--scale 1.0] [--rate 500]
        [--test 04]   # Test 04 (mixed WebSocket + HTTP) instead: 1, 10 and 20 minutes

Runs the suite's own Test 01 or 04 (as ``nightly run`` does: scenario, sampling, checks)
on a freshly started embedded platform for its plan's length (30 or 20 min) x scale at
``--rate`` messages a second, and prints the RSS of this process (the generator: load
engine, delivery ledger, receipts, the sampler's scrapes; the platform and the listener
processes are children and not counted) at 1, 10 and 30 (or 20) min x scale of the load
and the growth a minute between the first and the last mark, then the delivery figures
and the checks that failed. Before the delivery ledger settled messages, the full-length
run grew it from 208 MB to 1,019 MB (~23 MB a minute, Issue 15); flat is the goal.
``--scale 0.1`` takes ~3 min plus set-up.

``--synthetic`` leaves the platform out: the frames of a full-rate run (``--rate``
messages a second to 3 sockets, every one delivered once 50 ms after its send, simulated
time) go through the delivery ledger, and through the sent dict and receipts it replaced;
it prints the bytes each holds (tracemalloc) at the same marks. The full 30 minutes take
about a minute or two of CPU.
``--trace FRAMES`` runs under tracemalloc (slower: the platform may reach less than
the rate) and prints the traced total at each mark and the allocation sites that grew
most between the last two marks, by file and by traceback.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import hashlib
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import date
from pathlib import Path

import psutil

from nightly_pipeline import heap as heap_trim
from nightly_pipeline.suite.catalog import select_tests
from nightly_pipeline.suite.delivery import Sent
from nightly_pipeline.suite.ledger import DeliveryLedger
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.receipts import Receipts
from nightly_pipeline.suite.runner import run_suite_test
from nightly_pipeline.testbed.embedded import PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig

TESTS = ("01", "04")
"""The tests whose generator keeps a delivery ledger: 01 (30 min), 04 (20 min)."""


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_mb() -> dict[str, float]:
    """Where this process's heap is, in MB: glibc malloc's bytes in use (``malloc``: C
    allocations and Python's large objects; ``mmap``: its mmapped blocks) and free in
    its arenas (``free``: fragmentation, not returned to the system), SQLite's own
    (``sqlite``), pymalloc's arenas (``pymalloc``: 1 MiB each, freed only when empty) and
    the live small objects in them (``objects``). Empty on a libc without ``mallinfo2``."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
        out.update(malloc=info.uordblks / 2**20, mmap=info.hblkhd / 2**20)
        out["free"] = info.fordblks / 2**20
    with contextlib.suppress(OSError, AttributeError, ImportError):
        import _sqlite3

        used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
        used.restype = ctypes.c_int64
        out["sqlite"] = used() / 2**20
    if hasattr(sys, "_debugmallocstats"):
        out.update(_pymalloc_mb())
    return out


def _pymalloc_mb() -> dict[str, float]:
    """pymalloc's arenas now (``pymalloc``) and the bytes of live small objects in them
    (``objects``), read from ``sys._debugmallocstats`` (it writes to C's stderr)."""
    wanted = {"Total": "pymalloc", "# bytes in allocated blocks": "objects"}
    found: dict[str, float] = {}
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode(errors="replace").splitlines():
            name, _, value = line.partition("=")
            key = wanted.get(name.strip())
            if key is not None and key not in found:  # the first Total: the arenas'
                found[key] = int(value.replace(",", "").strip()) / 2**20
    return found


def marks_min(duration_s: float) -> tuple[float, float, float]:
    """1 and 10 minutes into the plan's length, and its end (30 for Test 01)."""
    return (1.0, 10.0, duration_s / 60.0)


class RssAt:
    """This process's RSS at each mark (seconds after ``start()``), on a thread."""

    def __init__(self, marks_s: list[float], trace: bool = False) -> None:
        self.marks_s = marks_s
        self.rss_mb: dict[float, float] = {}
        self.traced_mb: dict[float, float] = {}
        self.heap_mb: dict[float, dict[str, float]] = {}
        self.snapshots: dict[float, tracemalloc.Snapshot] = {}
        self._trace = trace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-marks", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        me = psutil.Process()
        for mark in self.marks_s:
            if self._stop.wait(max(0.0, self._started + mark - time.monotonic())):
                return
            self.rss_mb[mark] = me.memory_info().rss / 2**20
            self.heap_mb[mark] = heap_mb()
            if self._trace:
                self.traced_mb[mark] = tracemalloc.get_traced_memory()[0] / 2**20
                self.snapshots[mark] = tracemalloc.take_snapshot().filter_traces(
                    (tracemalloc.Filter(False, tracemalloc.__file__),)
                )
        if self._trace:  # printed now: the run may end badly, or late under tracemalloc
            _print_growth(self, self.marks_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _timed_trims() -> list[float]:
    """Every ``malloc_trim`` of the load (``nightly_pipeline.heap``), timed: seconds each."""
    took: list[float] = []
    trim = heap_trim.trim

    def timed() -> bool:
        started = time.perf_counter()
        done = trim()
        took.append(time.perf_counter() - started)
        return done

    heap_trim.trim = timed
    return took


def _timed_collections() -> list[float]:
    """Every ``gc.collect()`` of the run (the load's tick makes one a second), timed."""
    took: list[float] = []
    collect = gc.collect

    def timed(*args: int) -> int:
        started = time.perf_counter()
        found = collect(*args)
        took.append(time.perf_counter() - started)
        return found

    gc.collect = timed
    return took


def _figure(outcome, name: str) -> float:
    found = [m.value for m in outcome.record.metrics if m.metric == name and not m.tags]
    return found[0] if found else float("nan")


def synthetic(rate: float, marks_s: list[float]) -> None:
    """The ledger against the unsettled sent dict + receipts on the same simulated frames."""
    layout = {f"c{c}": tuple(f"user{c + k:04d}#0" for k in range(3)) for c in range(10)}
    for name in ("ledger", "unsettled"):
        tracemalloc.start()
        if name == "ledger":
            ledger = DeliveryLedger(layout, Receipts(layout=layout))
            send, fold = ledger.sent, ledger.frame
        else:
            sent: dict[str, Sent] = {}
            receipts = Receipts(layout=layout)
            send, fold = sent.__setitem__, receipts.add
        n, started, shown = 0, time.process_time(), []
        for mark in marks_s:
            while n / rate < mark:
                message_id, conversation = f"{n:08x}-0000-4000-8000-{n:012x}", f"c{n % 10}"
                sha = hashlib.sha256(message_id.encode()).hexdigest()
                send(message_id, Sent(conversation, sha, n / rate))
                for label in layout[conversation]:
                    fold(message_id, label, sha, True, n / rate + 0.05, conversation)
                n += 1
            shown.append(
                f"{mark / 60:5.1f} min {tracemalloc.get_traced_memory()[0] / 2**20:7.1f} MB"
            )
        tracemalloc.stop()
        cpu = time.process_time() - started
        print(f"{name:9s} ({n:,} messages, {cpu:.0f} s CPU): " + ", ".join(shown), flush=True)


def _print_growth(rss: RssAt, marks: list[float], top: int = 25) -> None:
    """Traced bytes at each mark, then the sites that grew most between the last two
    marks (past the warm-up: the recorder's first spill is at 180 s)."""
    minutes = (marks[-1] - marks[-2]) / 60.0
    print("  RSS at the marks: " + ", ".join(f"{rss.rss_mb[m]:.1f} MB" for m in marks))
    print(
        "  traced (tracemalloc) at the marks: "
        + ", ".join(f"{rss.traced_mb[m]:.1f} MB" for m in marks)
    )
    for key in ("filename", "traceback"):
        diff = rss.snapshots[marks[-1]].compare_to(rss.snapshots[marks[-2]], key)
        print(f"  top growth by {key}, between the last two marks (KiB a minute, blocks):")
        for stat in diff[:top]:
            print(
                f"    {stat.size_diff / 1024 / minutes:+9.1f} KiB/min"
                f" {stat.count_diff:+8d} blocks  now {stat.size / 1024:9.1f} KiB"
            )
            frames = stat.traceback.format() if key == "traceback" else [str(stat.traceback)]
            for line in frames[-2 * 8 :]:
                print(f"        {line.strip()}")
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="of the plan's length")
    parser.add_argument("--rate", type=float, help="default: the plan's (500 msg/s)")
    parser.add_argument("--test", choices=TESTS, default="01")
    parser.add_argument("--synthetic", action="store_true", help="the ledger alone, no platform")
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="FRAMES",
        help="tracemalloc with FRAMES frames: the top growing sites between the last two marks",
    )
    args = parser.parse_args()
    if not 0 < args.scale <= 1.0:
        parser.error("--scale must be in (0, 1]: 0.1 runs 3 minutes")
    test = select_tests(args.test)[0]
    rate = args.rate or float(test.spec.rate)
    marks_at = marks_min(test.spec.duration_s)
    duration_s = test.spec.duration_s * args.scale
    marks = [m * 60.0 * args.scale for m in marks_at]
    if args.synthetic:
        synthetic(rate, marks)
        return
    profile = dataclasses.replace(
        PROFILES["nightly"], max_duration_s=duration_s, load=rate / test.spec.rate
    )
    if args.trace:
        tracemalloc.start(args.trace)
    rss = RssAt(marks, trace=bool(args.trace))
    trims = _timed_trims()
    collections = _timed_collections()
    with tempfile.TemporaryDirectory(prefix="generator-memory-") as tmp:
        root = Path(tmp)
        stack = StackConfig(run_dir=root / "stack", search_path=os.environ.get("PATH"))
        settings = PlatformSettings(users=100, password_hash_n=2**10)
        with embedded_platform(stack, settings) as platform:
            before = psutil.Process().memory_info().rss / 2**20
            rss.start()  # the load starts within a second or two (log-ins, sockets)
            try:
                outcome = run_suite_test(
                    test,
                    profile,
                    platform.target(),
                    night=date.today(),
                    run_id="generator-memory",
                    run_dir=root / "run",
                )
            finally:
                rss.stop()
    print(
        f"Test {args.test} for {duration_s:g} s at {rate:g} msg/s (scale {args.scale:g});"
        f" generator RSS before the test {before:.0f} MB"
    )
    for minutes, mark in zip(marks_at, marks, strict=True):
        got = rss.rss_mb.get(mark)
        shown = f"{got:7.0f} MB" if got is not None else "   (not reached)"
        heap = "  ".join(f"{k} {v:.1f}" for k, v in rss.heap_mb.get(mark, {}).items())
        print(f"  at {minutes:4g} min x {args.scale:g} = {mark:7.1f} s: {shown}  ({heap})")
    first, last = rss.rss_mb.get(marks[0]), rss.rss_mb.get(marks[-1])
    if first is not None and last is not None:
        per_min = (last - first) / ((marks[-1] - marks[0]) / 60.0)
        print(f"  growth from the first mark to the last: {per_min:+.2f} MB a minute")
    if trims:
        print(
            f"  heap trims (nightly_pipeline.heap): {len(trims)},"
            f" {max(trims) * 1000:.1f} ms at most,"
            f" {sum(trims) / len(trims) * 1000:.1f} ms on average (on their own thread)"
        )
    if collections:
        took = sorted(collections)
        print(
            f"  gc.collect() calls: {len(took)}, {took[-1] * 1000:.1f} ms at most,"
            f" p99 {took[int(0.99 * (len(took) - 1))] * 1000:.1f} ms,"
            f" median {took[len(took) // 2] * 1000:.1f} ms"
        )
    failed = [c.check.name for c in outcome.checks if not c.passed]
    print(
        f"achieved {_figure(outcome, 'http_reqs.rate'):.1f} msg/s;"
        f" deliveries expected {_figure(outcome, 'delivery_expected.count'):,.0f},"
        f" lost {_figure(outcome, 'delivery_lost.count'):,.0f},"
        f" duplicated {_figure(outcome, 'delivery_duplicated.count'):,.0f};"
        f" e2e p95 {_figure(outcome, 'e2e_delivery_ms.p95'):.1f} ms;"
        + (f" failed: {', '.join(failed)}" if failed else " every check passed")
    )
    for c in outcome.checks:  # what failed, by how much: the run's directory is gone now
        if not c.passed:
            print(f"  {c.check.name}: observed {c.observed:g}; {c.detail}")


if __name__ == "__main__":
    main()
