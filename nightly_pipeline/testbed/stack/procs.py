"""One child process of the stack: started in its own session (so its process group can
be killed whole) and tied to the stack's process (``spawn``: it dies with it; ``on_spawn``
records it for the ``reaper``), output appended to a log file, readiness polled with a bound, and a
stop that escalates SIGTERM → SIGKILL and then verifies by pid that nothing is left.

``stop()`` first sends SIGCONT to the group: a process left paused (SIGSTOP) would
otherwise hold a graceful stop's signal pending until the timeout. ``start()`` may be
called again after ``stop()`` (a restart): same argv, environment and log file, the new
start's lines appended (``log_text()`` reads only them)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from nightly_pipeline.testbed.stack.errors import ReadinessTimeoutError, StackStartError
from nightly_pipeline.testbed.stack.spawn import die_with_parent, spawn_on_owner_thread

log = logging.getLogger(__name__)
T = TypeVar("T")
_POLL_S = 0.05


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        popen_kwargs: Mapping[str, Any] | None = None,
        stdin_pipe: bool = False,
        on_spawn: Callable[[ManagedProcess], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._popen_kwargs = dict(popen_kwargs or {})
        self._stdin_pipe = stdin_pipe
        self._on_spawn = on_spawn
        self._log_offset = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self._log_offset = out.tell()
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {self.argv}\n".encode())
            out.flush()
            try:
                spawn_on_owner_thread(lambda: self._spawn(out))
            except OSError as exc:
                raise StackStartError(self.name, f"cannot execute {self.argv[0]}: {exc}") from exc
        assert self.proc is not None
        log.debug("started %s pid %d: %s", self.name, self.proc.pid, self.argv)

    def _spawn(self, out: Any) -> None:
        """On the spawner thread (``spawn``): start, keep and record the process in one go,
        so a caller interrupted meanwhile still finds it to stop."""
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if self._stdin_pipe else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self._cwd,
            start_new_session=True,
            preexec_fn=die_with_parent(),
            **self._popen_kwargs,
        )
        if self._on_spawn is not None:
            self._on_spawn(self)  # recorded before any wait: a kill -9 from here on is reaped

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """This start's part of the log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
        """Poll ``probe`` (exceptions count as not ready) until it returns a value."""
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while True:
            try:
                result = probe()
                if result is not None and result is not False:
                    return result
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if not self.running():
                code = self.proc.returncode if self.proc is not None else None
                raise StackStartError(
                    self.name, f"exited with code {code} before {what}", self.log_path, self.tail()
                )
            if time.monotonic() >= deadline:
                hint = f" (last probe error: {last_error})" if last_error else ""
                raise ReadinessTimeoutError(
                    self.name,
                    f"not ready ({what}) within {timeout_s:g} s{hint}",
                    self.log_path,
                    self.tail(),
                )
            time.sleep(_POLL_S)

    def wait_line(self, pattern: str, timeout_s: float) -> re.Match[str]:
        regex = re.compile(pattern)
        return self.wait_ready(
            lambda: regex.search(self.log_text()), timeout_s, f"a log line matching {pattern!r}"
        )

    def stop(
        self, timeout_s: float = 10.0, graceful: Callable[[], None] | None = None
    ) -> list[int]:
        """Stop the process and its group; return the pids still alive afterwards."""
        if self.proc is None:
            return []
        tree = _tree(self.proc.pid)
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGCONT)  # a paused process cannot stop
            if graceful is not None:
                try:
                    graceful()
                except Exception as exc:
                    log.warning("%s: graceful stop failed: %s", self.name, exc)
            if self.proc.poll() is None:
                _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
        tree |= _tree(self.proc.pid)
        if self.proc.poll() is None or any(_alive(p) for p in tree):
            log.warning(
                "%s (pid %d) did not stop in %g s; killing it", self.name, self.pid, timeout_s
            )
            _signal_group(self.proc.pid, signal.SIGKILL)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5.0)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        _wait_gone(tree, 5.0)
        return sorted(p for p in tree | {self.proc.pid} if _alive(p))


def _tree(pid: int) -> set[int]:
    """``pid``, its descendants and every process in its group (pid == pgid here)."""
    found = {pid}
    with contextlib.suppress(psutil.Error):
        found |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
    with contextlib.suppress(psutil.Error):
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(proc.info["pid"]) == pid:
                    found.add(proc.info["pid"])
    return found


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(pids: set[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
