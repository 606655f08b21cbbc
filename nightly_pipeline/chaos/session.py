"""One chaos test's faults: injected by name, recorded in the ledger before they touch
anything, their windows timed, and all reverted at the end whatever happened.

Chaos Toolkit calls the suite's activities (``chaos.activities``) with the experiment's
``configuration``; its ``nightly_session`` key names the session they act on, which
lives in this process (``open_session``), beside the platform's handles.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nightly_pipeline.chaos.backend import ChaosBackend
from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.chaos.platform_faults import PlatformFault, build


@dataclass
class FaultWindow:
    """When a fault was in the world, on the perf_counter clock and the wall clock."""

    name: str
    type: str
    params: Mapping[str, Any]
    injected_at: float
    injected_wall: datetime
    reverted_at: float | None = None
    reverted_wall: datetime | None = None
    revert_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "params": dict(self.params),
            "injected_at": self.injected_wall.isoformat(),
            "reverted_at": self.reverted_wall.isoformat() if self.reverted_wall else None,
            "revert_error": self.revert_error,
        }


@dataclass
class ChaosSession:
    backend: ChaosBackend
    ledger: FaultLedger
    run_id: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    windows: list[FaultWindow] = field(default_factory=list)
    _active: dict[str, tuple[PlatformFault, FaultWindow, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: str | None = None

    def stop(self, why: str) -> None:
        """No fault is injected from now on (the test was interrupted or has ended); the
        experiment's later injections fail with ``why``."""
        self.stopped = why

    def inject(self, name: str, type_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Inject a fault under ``name`` (one at a time per name)."""
        fault = build(type_name, self.backend, params)
        with self._lock:
            if self.stopped is not None:
                raise RuntimeError(f"fault {name!r} not injected: {self.stopped}")
            if name in self._active:
                raise ValueError(f"fault {name!r} is already injected")
            entry = self.ledger.record(self.run_id, type_name, fault.describe())
        try:
            fault.inject()
        except BaseException as exc:
            self.ledger.forget(entry)
            self.stop(f"fault {name!r} could not be injected ({exc})")  # nothing else is
            raise
        self.ledger.update(entry, fault.leftover())
        window = FaultWindow(name, type_name, dict(params), time.perf_counter(), _now())
        with self._lock:
            self._active[name] = (fault, window, entry)
            self.windows.append(window)
        return window.to_json()

    def revert(self, name: str) -> dict[str, Any]:
        """Revert ``name``; a fault that will not revert is recorded, stays active (the
        rollback and the session's exit try again; the ledger keeps it for the next
        start) and the error is re-raised."""
        with self._lock:
            found = self._active.pop(name, None)
        if found is None:
            raise ValueError(f"no injected fault named {name!r}")
        fault, window, entry = found
        try:
            fault.revert()
        except BaseException as exc:
            window.revert_error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._active[name] = found
            raise
        finally:
            window.reverted_at, window.reverted_wall = time.perf_counter(), _now()
        window.revert_error = None
        self.ledger.forget(entry)
        return window.to_json()

    def revert_all(self) -> list[str]:
        """Revert every fault still injected; the errors of those that would not."""
        errors = []
        for name in list(self._active):
            try:
                self.revert(name)
            except Exception as exc:
                errors.append(f"{name}: {exc}")
        return errors


_SESSIONS: dict[str, ChaosSession] = {}


@contextlib.contextmanager
def open_session(backend: ChaosBackend, ledger: FaultLedger, run_id: str) -> Iterator[ChaosSession]:
    """A session the activities can find by its token; every fault reverted on exit
    (an error naming the faults that would not revert is raised then)."""
    session = ChaosSession(backend, ledger, run_id)
    _SESSIONS[session.token] = session
    try:
        yield session
    finally:
        session.stop("the chaos test has ended")
        _SESSIONS.pop(session.token, None)
        errors = session.revert_all()
        if errors:
            raise FaultNotRevertedError(
                "faults left in place (the next start's ledger will retry): " + "; ".join(errors)
            )


class FaultNotRevertedError(RuntimeError):
    """A fault could not be reverted: the night is failed, loudly."""


def process_gone(backend: ChaosBackend) -> str | None:
    """A platform process that is not running once the faults are reverted (the API
    exited), or None (all running, or a platform that offers no process handles): what
    is gone does not recover by itself, so nobody should wait for it."""
    return next((name for name in backend.process_names() if not backend.is_running(name)), None)


def gone_in(configuration: Mapping[str, Any] | None) -> str | None:
    """``process_gone`` of the running chaos test the configuration names, if any."""
    session = _SESSIONS.get(str((configuration or {}).get("nightly_session")))
    return None if session is None else process_gone(session.backend)


def session_of(configuration: Mapping[str, Any] | None) -> ChaosSession:
    token = (configuration or {}).get("nightly_session")
    session = _SESSIONS.get(str(token))
    if session is None:
        raise RuntimeError(
            "this activity acts on a running nightly chaos test: the experiment's "
            "configuration must carry its 'nightly_session' (the suite sets it)"
        )
    return session


def _now() -> datetime:
    return datetime.now(UTC)
