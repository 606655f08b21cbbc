"""The layout of ``$NIGHTLY_HOME``, defined here and nowhere else::

    $NIGHTLY_HOME/              default ./.nightly, made absolute at the entry point
      metrics.duckdb            the metric store (``--store`` may name another file)
      dagster/                  the one Dagster instance: `nightly run`, `nightly ui`
                                and `make dagster-dev` all record their runs here
      stack/<run id>/           each embedded platform's data, logs and endpoints
      runs/<run id>/            what a test run keeps beside the store
      reports/                  the nightly HTML reports and their index
      chaos/active.json         faults injected and not reverted yet (a killed run's are
                                reverted at the next start)
      alerts/pending/           run-failure alerts a webhook did not take, one JSON file
                                each, until regression_alert adopts them (alerts.inbox)

A home is absolute: PostgreSQL changes into its data directory, so a relative path
would point somewhere else once it has (its socket lock file could not be created).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "NIGHTLY_HOME"
DEFAULT_HOME = ".nightly"
STORE_FILENAME = "metrics.duckdb"


@dataclass(frozen=True)
class Home:
    root: Path
    store_file: str = STORE_FILENAME

    def __post_init__(self) -> None:
        if not self.root.is_absolute():
            raise ValueError(f"home {self.root} is relative: build it with Home.at()")

    @classmethod
    def at(cls, path: str | Path) -> Home:
        """The home at ``path`` (``~`` expanded; relative to the working directory)."""
        return cls(Path(path).expanduser().absolute())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Home:
        """``$NIGHTLY_HOME``, or ``./.nightly`` when unset or empty."""
        return cls.at(env.get(HOME_ENV, "").strip() or DEFAULT_HOME)

    @classmethod
    def of_store(cls, store: str | Path) -> Home:
        """The home around a store file given explicitly (``--store``): its directory."""
        path = Path(store).expanduser().absolute()
        return cls(path.parent, path.name)

    @property
    def store(self) -> Path:
        return self.root / self.store_file

    @property
    def dagster(self) -> Path:
        return self.root / "dagster"

    @property
    def stack(self) -> Path:
        return self.root / "stack"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def pending_alerts(self) -> Path:
        return self.root / "alerts" / "pending"

    @property
    def chaos_ledger(self) -> Path:
        return self.root / "chaos" / "active.json"
