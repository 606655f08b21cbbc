"""Exceptions raised by the embedded stack launcher::

StackError                    base of everything raised by testbed.stack
├── StackConfigError          invalid StackConfig / ProcessSpec (also a ValueError)
├── BinaryNotFoundError       postgres / redis-server not found; names the fix
├── PortInUseError            a requested port is taken
├── StackStartError           a process exited or failed while starting (log tail inside)
│   └── ReadinessTimeoutError not ready within the bounded timeout (log tail inside)
├── TeardownError             a process survived teardown or a restart's stop (pids inside)
└── ProcessControlError       process control (``process_control``) refused a request
    ├── UnknownProcessError   no process of that name (also a LookupError)
    └── ProcessNotRunningError  signal to a process that is not running; names the fix
                              (also a ProcessLookupError, as os.kill would raise)

``StackConfigError`` and ``BinaryNotFoundError`` are also the suite's
``ConfigurationError``: another attempt cannot help (nightly_pipeline.suite.errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nightly_pipeline.suite.errors import ConfigurationError


class StackError(Exception):
    """Base class of the launcher's exceptions."""


class StackConfigError(StackError, ConfigurationError):
    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("invalid stack config: " + "; ".join(self.errors))


class BinaryNotFoundError(StackError, ConfigurationError):
    def __init__(self, binary: str, looked_in: Sequence[str], fix: str) -> None:
        self.binary = binary
        self.looked_in = tuple(looked_in)
        where = "; ".join(self.looked_in) or "nowhere"
        super().__init__(f"{binary} not found (looked in: {where}); fix: {fix}")


class PortInUseError(StackError):
    def __init__(self, what: str, port: int, detail: str = "") -> None:
        self.port = port
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"{what} port {port} on 127.0.0.1 is already in use{extra}; "
            f"choose another port or 0 for a free one"
        )


class StackStartError(StackError):
    def __init__(self, name: str, reason: str, log: Path | None = None, tail: str = "") -> None:
        self.name = name
        self.log = log
        self.tail = tail
        where = f"\n--- last lines of {log} ---\n{tail.rstrip()}" if log is not None else ""
        super().__init__(f"{name}: {reason}{where}")


class ReadinessTimeoutError(StackStartError):
    pass


class TeardownError(StackError):
    def __init__(self, survivors: Sequence[tuple[str, int]]) -> None:
        self.survivors = tuple(survivors)
        shown = ", ".join(f"{name} pid {pid}" for name, pid in self.survivors)
        super().__init__(f"processes survived teardown: {shown}")


class ProcessControlError(StackError):
    """Process control of a running stack could not do what was asked."""


class UnknownProcessError(ProcessControlError, LookupError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        names = ", ".join(known) or "none: the stack is not running (start it first)"
        super().__init__(f"no process named {name!r} in the stack; its processes: {names}")


class ProcessNotRunningError(ProcessControlError, ProcessLookupError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(
            f"{name} is not running ({reason}); nothing was signalled. "
            f"Start it again with restart({name!r}), or check is_running({name!r}) first"
        )
