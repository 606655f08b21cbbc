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
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO, TypeVar

from nightly_pipeline.testbed.stack.config import StackConfig
from nightly_pipeline.testbed.stack.errors import StackError
from nightly_pipeline.testbed.stack.launcher import EmbeddedStack, Endpoints, ProcessFactory

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Stop(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def serve_until_stopped(
    up: Callable[[], AbstractContextManager[T]],
    describe: Callable[[T], tuple[dict[str, Any], float]],
    *,
    what: str,
    failed: str,
    failures: tuple[type[Exception], ...],
    out: TextIO,
    stop_event: threading.Event,
) -> int:
    """Enter ``up()``, print what ``describe`` shows of it (JSON) and how long it took, then
    block until SIGINT, SIGTERM or ``stop_event``; leave it (its teardown). Installs the
    signal handlers for that time only. 0 after ``stop_event``, 128 + the signal number
    after a signal, 1 (``failed: <error>``) when ``up`` raised one of ``failures``."""
    previous = {}

    def on_signal(signum: int, _frame: object) -> None:
        stop_event.set()
        raise _Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        with up() as running:
            shown, start_seconds = describe(running)
            print(json.dumps(shown, indent=2), file=out, flush=True)
            print(
                f"{what} up in {start_seconds:.1f} s; Ctrl-C or SIGTERM to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop_event.wait(1.0):
                pass
        return 0
    except _Stop as stop:
        print(f"{what} down (signal {stop.signum})", file=sys.stderr)
        return 128 + stop.signum
    except failures as exc:
        print(f"{failed}: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


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
    try:
        cfg = StackConfig(run_dir=run_dir, search_path=search_path, **config)
    except TypeError as exc:
        print(f"stack up: {exc}", file=sys.stderr)
        return 2
    stacks: list[EmbeddedStack] = []

    def up() -> EmbeddedStack:
        # built inside the serve: a refused configuration (StackConfigError) is a failure
        stacks.append(EmbeddedStack(cfg, processes=processes or ()))
        return stacks[0]

    def shown(endpoints: Endpoints) -> tuple[dict[str, Any], float]:
        extra = describe(endpoints) if describe is not None else {}
        return {**endpoints.to_json(), **extra}, stacks[0].start_seconds

    return serve_until_stopped(
        up,
        shown,
        what="stack",
        failed="stack up failed",
        failures=(StackError,),
        out=out or sys.stdout,
        stop_event=stop_event or threading.Event(),
    )


__all__ = ["serve_until_stopped", "stack_up_main"]
