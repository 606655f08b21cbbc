"""Chaos Toolkit (chaostoolkit-lib) as the suite runs it: beside the load, on a thread.

Everything this project does with chaoslib beyond its public functions is here:
``Runner.run`` installs SIGTERM/SIGUSR handlers (``chaoslib.exit.exit_signals``), which
Python allows only on the main thread, and the main thread is the load's (it defers
SIGINT/SIGTERM itself and stops the load gracefully). So the experiment runs with that
context replaced by a no-op; the run's own interrupt handling stays in charge, and the
experiment's rollbacks still run when the method fails.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import chaoslib.loader
import chaoslib.run
from chaoslib.exceptions import ChaosException
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment

from nightly_pipeline.suite.errors import ConfigurationError

SETTINGS: dict[str, Any] = {"runtime": {"rollbacks": {"strategy": "always"}}}
"""Rollbacks run whatever happened in the method (a fault is never left behind)."""


class ExperimentInvalid(ConfigurationError):
    """Chaos Toolkit refused the experiment; its own words are quoted."""


def validate(experiment: Mapping[str, Any]) -> None:
    """Chaos Toolkit's validation, before any load: its errors quoted in ours."""
    try:
        ensure_experiment_is_valid(dict(experiment))
    except ChaosException as exc:
        title = experiment.get("title", "(untitled)")
        raise ExperimentInvalid(f"experiment {title!r} does not validate: {exc}") from exc


def load_experiment(path: Path) -> dict[str, Any]:
    """A user's experiment file (JSON or YAML, chaoslib's loader), validated by Chaos
    Toolkit; ``ExperimentInvalid`` quoting chaoslib when it cannot be used."""
    if not Path(path).is_file():
        raise ExperimentInvalid(f"experiment {path}: no such file")
    try:
        experiment = dict(chaoslib.loader.load_experiment(str(path)))
    except (ChaosException, ValueError, OSError) as exc:
        raise ExperimentInvalid(f"experiment {path}: cannot load it: {exc}") from exc
    try:
        validate(experiment)
    except ExperimentInvalid as exc:
        raise ExperimentInvalid(f"{path}: {exc}") from exc
    return experiment


class BackgroundExperiment:
    """Runs one experiment on a thread; ``journal()`` waits for it (bounded)."""

    def __init__(self, experiment: Mapping[str, Any]) -> None:
        validate(experiment)
        self.experiment = dict(experiment)
        self._journal: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-experiment", daemon=True)

    def start(self) -> BackgroundExperiment:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with _quiet_chaoslib(), _without_signal_handlers():
                self._journal = run_experiment(self.experiment, settings=SETTINGS)
        except BaseException as exc:
            self._error = exc

    def running(self) -> bool:
        """Started and not ended yet (its faults may still be held or being reverted)."""
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def journal(self, timeout_s: float) -> dict[str, Any]:
        """The journal; one with status ``unfinished`` (and no activities) when the
        experiment did not end within ``timeout_s`` or crashed inside chaoslib."""
        if not self.join(timeout_s):
            return self._unfinished(f"still running after {timeout_s:g} s")
        if self._journal is None:
            return self._unfinished(f"chaoslib failed: {self._error!r}")
        return self._journal

    def _unfinished(self, why: str) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "status": "unfinished",
            "deviated": True,
            "error": why,
            "run": [],
            "rollbacks": [],
        }


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_signal_handlers():
    with _PATCH_LOCK:
        original = chaoslib.run.exit_signals
        chaoslib.run.exit_signals = contextlib.nullcontext
        try:
            yield
        finally:
            chaoslib.run.exit_signals = original


@contextlib.contextmanager
def _quiet_chaoslib():
    """chaoslib logs every activity at INFO, and that the rollbacks run at WARNING, to
    stderr; the journal records them all."""
    logger = logging.getLogger("chaostoolkit")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
