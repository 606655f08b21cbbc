"""Errors raised by the metric store.

Callers (assets, CLI) catch these instead of DuckDB's own exceptions: the store translates
driver errors at its boundary so that a message always names the database file and says
what to do next. The original DuckDB error stays attached as ``__cause__``.

    StoreError                      base class; catch this to handle any store failure
    ├── StoreBusyError              another process held the file for longer than the budget
    ├── StoreSchemaTooNewError      the file was written by a newer nightly_pipeline
    ├── StoreCorruptError           the path exists but is not a DuckDB database
    ├── StoreWriteError             a record was rejected; nothing of it was written
    └── RunNotFoundError            finish_run() for a run_id never written
"""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base class of every error the metric store raises."""


class StoreBusyError(StoreError):
    """The database stayed locked by someone else for longer than the retry budget."""

    def __init__(self, path: Path, *, waited_s: float, holder: str | None) -> None:
        self.path = path
        self.waited_s = waited_s
        self.holder = holder
        who = holder or "unknown holder"
        super().__init__(
            f"metric store {path} is busy: still locked by {who} after {waited_s:.1f} s; "
            "retry later or stop the other process"
        )


class StoreSchemaTooNewError(StoreError):
    """The file's schema is newer than this code; it is left untouched."""

    def __init__(self, path: Path, *, file_version: int, supported_version: int) -> None:
        self.path = path
        self.file_version = file_version
        self.supported_version = supported_version
        super().__init__(
            f"metric store {path} has schema version {file_version}, but this nightly_pipeline "
            f"supports up to version {supported_version}. The file was not modified. "
            "Fix: upgrade nightly_pipeline, or point NIGHTLY_HOME at another directory."
        )


class StoreCorruptError(StoreError):
    """The path exists but DuckDB cannot read it as a database."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is not a readable DuckDB metric store ({detail}); "
            "move it aside or point NIGHTLY_HOME at another directory"
        )


class StoreWriteError(StoreError):
    """DuckDB rejected a record; the transaction was rolled back."""


class RunNotFoundError(StoreError):
    """An update named a run_id that the store has never seen."""
