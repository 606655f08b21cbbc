"""Give the C heap's free memory back to the system during a long run (glibc only).

The load engine trims (``HeapTrim``, from its once-a-second tick); the reference
platform's processes pin glibc's mmap threshold at start (``fix_mmap_threshold``).

A load process frees as much as it allocates: responses, frames, per-second buffers, the
rows the recorder spills. glibc's malloc keeps what is freed inside its arenas (the main
heap and one per thread that allocates: the listener's pump thread, the samplers), and
returns memory to the system only from the top of the main heap, when enough is free
there. Holes below the top stay resident: measured with ``mallinfo2`` during Test 01 at
500 msg/s (bench/generator_memory.py), 2 to 8 MB sat free inside the arenas, counted in
the generator's RSS (Issue 15). ``malloc_trim(0)`` releases every whole free page of
every arena (``madvise`` ``MADV_DONTNEED``; glibc >= 2.8), not only the top: ``HeapTrim``
calls it at most once every ``every_s`` seconds, on a thread (it walks every free chunk:
37 ms on a 300 MB fragmented heap with nothing to give back, 180 ms when it gave back
130 MB). It changes no value the run records. Elsewhere (musl, macOS) it does nothing.

The platform's processes need no trim: they do not keep big blocks in the first place.
glibc serves a block above its mmap threshold (128 KiB at start) with a mapping of its own
and unmaps it on free, but once such a block is freed it raises the threshold to that
block's size (up to 32 MiB), and the top-trim threshold to twice that: from then on
blocks that size come from an arena and stay in it. The API verifies logins with scrypt
(``128 * r * n`` bytes, 1 MiB at the ci cost) on threads, so each thread that hashed for
the first time kept ~1 MiB in its own arena, a step of RSS whenever a busy moment woke
another thread (six threads: +6.2 MB; a CI run failed Test 06's 5 % memory check on +4.3
MB). The same rise made the API's RSS step during Test 01 at 500 msg/s (glibc's free
bytes 3 → 11 MB in 14 min, after bursts; the dedup set's 4 MB table, rebuilt every ~2
min, from the heap) and fail Test 01's 10 % memory check. ``fix_mmap_threshold(t)`` ends
the moving (``mallopt``): blocks of ``t`` or more are unmapped when freed, smaller ones
live in arenas. The dispatcher and the consumer pin it at glibc's starting 128 KiB. The
API pins it just above its scrypt buffer (``threshold_above``: 2 MiB at the ci cost), so
that buffer stays in each hashing thread's arena, reused login after login, and warms
every one of those threads at start (testbed/api/passwords.py): the memory is taken
before any load, never as growth, and the dedup set's tables are still unmapped. Pinned
at 128 KiB instead, each login's buffer was a fresh mapping whose pages fault in: +20-40 %
per login (bench/README.md). A ``malloc_trim`` every 10 s kept the API flat too, but
walked every free chunk each time; it was taken out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable
from typing import Any

TRIM_EVERY_S = 10.0


def _libc_function(name: str) -> Any | None:
    """The C library's function ``name``; None where there is no such function (not
    glibc: musl has no ``malloc_trim``, macOS neither it nor ``mallopt``)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _load_trim() -> Callable[[int], int] | None:
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _load_trim()

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's own starting value: blocks this big or bigger are mmapped, always."""
MMAP_THRESHOLD_MAX_BYTES = 32 * 2**20
"""The highest threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""


def threshold_above(block_bytes: int) -> int:
    """The smallest power of two that a block of ``block_bytes`` (plus malloc's header)
    stays under, from glibc's 128 KiB start to its 32 MiB ceiling: pinned there, such
    blocks live in an arena and bigger ones are unmapped when freed."""
    wanted = 1 << (block_bytes + 64).bit_length()
    return max(MMAP_THRESHOLD_BYTES, min(wanted, MMAP_THRESHOLD_MAX_BYTES))


def fix_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every block of ``threshold_bytes`` or more with a mapping of its own, given
    back when freed, for the rest of the process, and keep up to twice that free at the
    top of a heap (glibc's own ratio when it moves the threshold itself); see the
    module's docstring. False where there is no ``mallopt`` (not glibc)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes)) and bool(
        mallopt(M_TRIM_THRESHOLD, 2 * threshold_bytes)
    )


def trim() -> bool:
    """Return the free pages of every malloc arena to the system; False where there is
    no ``malloc_trim`` (not glibc)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class HeapTrim:
    """``trim()`` at most once every ``every_s`` seconds, on a thread of its own: ctypes
    releases the GIL for the call, so the event loop that asks (``maybe()``, once a tick)
    goes on while glibc walks its free lists (tens of ms on a heap of a few hundred MB)."""

    def __init__(
        self, every_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = TRIM_EVERY_S if every_s is None else every_s
        self.clock = clock
        self.trims = 0
        self.seconds = 0.0  # spent trimming, in total
        self._next = clock() + self.every_s
        self._thread: threading.Thread | None = None

    def maybe(self) -> None:
        now = self.clock()
        if now < self._next or _TRIM is None:
            return
        self._next = now + self.every_s
        if self._thread is not None and self._thread.is_alive():
            return  # the last one has not finished: skip a turn
        self._thread = threading.Thread(target=self._trim, name="heap-trim", daemon=True)
        self._thread.start()

    def _trim(self) -> None:
        started = time.perf_counter()
        trim()
        self.seconds += time.perf_counter() - started
        self.trims += 1

    def join(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)
