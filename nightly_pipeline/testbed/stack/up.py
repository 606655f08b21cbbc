"""``nightly stack up``: start the embedded stack, print its endpoints, wait for
Ctrl-C / SIGTERM, tear it down. The only place in the launcher that installs signal
handlers."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from nightly_pipeline.testbed.stack.config import StackConfig
from nightly_pipeline.testbed.stack.errors import StackError
from nightly_pipeline.testbed.stack.launcher import EmbeddedStack, Endpoints, ProcessFactory

log = logging.getLogger(__name__)


class _Stop(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stack_up_main(
    run_dir: Path,
    *,
    search_path: str | None = None,
    out: TextIO | None = None,
    stop_event: threading.Event | None = None,
    processes: ProcessFactory | None = None,
    describe: Callable[[Endpoints], dict[str, Any]] | None = None,
    **config: Any,
) -> int:
    """Start the stack in ``run_dir``, print the endpoints (JSON) and block until SIGINT,
    SIGTERM or ``stop_event``; tear down. ``config`` takes any other :class:`StackConfig`
    field (``postgres_port``, ``postgres_bin_dir``, ...); ``processes`` adds processes to
    the stack and ``describe`` what to print beside the endpoints. Returns the exit code:
    0 after ``stop_event``, 128 + signal number after a signal, 1 when the stack failed."""
    out = out or sys.stdout
    stop_event = stop_event or threading.Event()
    try:
        cfg = StackConfig(run_dir=run_dir, search_path=search_path, **config)
    except TypeError as exc:
        print(f"stack up: {exc}", file=sys.stderr)
        return 2
    previous = {}

    def on_signal(signum: int, _frame: object) -> None:
        stop_event.set()
        raise _Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        stack = EmbeddedStack(cfg, processes=processes or ())
        with stack as endpoints:
            shown = endpoints.to_json()
            if describe is not None:
                shown = {**shown, **describe(endpoints)}
            print(json.dumps(shown, indent=2), file=out, flush=True)
            print(
                f"stack up in {stack.start_seconds:.1f} s; Ctrl-C or SIGTERM to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop_event.wait(1.0):
                pass
        return 0
    except _Stop as stop:
        print(f"stack down (signal {stop.signum})", file=sys.stderr)
        return 128 + stop.signum
    except StackError as exc:
        print(f"stack up failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


__all__ = ["stack_up_main"]
