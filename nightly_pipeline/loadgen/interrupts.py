"""Ctrl-C (SIGINT) and SIGTERM while a load runs: stop it gracefully, then let the
caller's own handler have the signal.

Why not leave the signal to the caller: a handler that raises (Python's
KeyboardInterrupt, Dagster's DagsterExecutionInterruptedError) raises wherever the main
thread happens to be, often inside one of the event loop's callbacks; the loop logs the
exception as "Exception in callback", the callback's future is never resolved, and the
run waits for it forever. Here the handler only records the signal; the load's
once-a-second tick stops the run (bounded by its graceful stop); once the loop is closed
the previous handlers are back and the signal is raised again for them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """The signals received while installed, in order."""

    def __init__(self) -> None:
        self.received: list[signal.Signals] = []

    @property
    def reason(self) -> str | None:
        if not self.received:
            return None
        return f"interrupted by {self.received[0].name}"

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum))


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Interrupts]:
    """Within the block, SIGINT/SIGTERM are only recorded (``Interrupts.reason``); on
    exit the previous handlers are restored and the first signal is raised again.

    Only signals with a Python handler are taken over (a default SIGTERM still kills),
    and only in the main thread (elsewhere signals cannot be handled: nothing changes).
    """
    interrupts = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return
    previous = {}
    for sig in SIGNALS:
        handler = signal.getsignal(sig)
        if callable(handler):
            previous[sig] = handler
            signal.signal(sig, interrupts._record)
    try:
        yield interrupts
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if interrupts.received:
            signal.raise_signal(interrupts.received[0])
