"""The process faults' common part: a named process of the platform, signalled through
the platform's own handle (never looked up by name in the process table)."""

from __future__ import annotations

import signal
from typing import Any

import psutil

from nightly_pipeline.chaos.platform_faults.base import FaultError, PlatformFault


class ProcessFault(PlatformFault):
    params_allowed = frozenset({"process"})

    @property
    def process(self) -> str:
        name = str(self._require("process"))
        if name not in self.backend.process_names():
            known = ", ".join(self.backend.process_names())
            raise ValueError(f"fault {self.type_name!r}: no process {name!r}; known: {known}")
        return name

    def _signal(self, sig: signal.Signals) -> None:
        name = self.process
        if not self.backend.is_running(name):
            raise FaultError(f"{self.type_name}: {name} is not running (pid gone)")
        try:
            self.backend.signal(name, sig)
        except (OSError, RuntimeError) as exc:
            raise FaultError(f"{self.type_name}: cannot signal {name}: {exc}") from exc

    def _restart_if_down(self) -> None:
        name = self.process
        if not self.backend.is_running(name):
            try:
                self.backend.restart(name)
            except Exception as exc:
                raise FaultError(f"{self.type_name}: cannot restart {name}: {exc}") from exc


def process_identity(pid: int) -> dict[str, Any]:
    """A pid with its start time, so a later reader can tell it from a reused pid."""
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.Error:
        return {"pid": pid, "create_time": None}


def same_process(identity: dict[str, Any]) -> psutil.Process | None:
    """The process ``identity`` names, if it still runs (and is not a reused pid)."""
    try:
        proc = psutil.Process(int(identity["pid"]))
        if (
            identity.get("create_time") is not None
            and proc.create_time() != identity["create_time"]
        ):
            return None
        return proc
    except (psutil.Error, KeyError, ValueError):
        return None
