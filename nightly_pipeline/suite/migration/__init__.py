"""Test 13's machinery, usable without Dagster or the suite's runner: a migration file's
steps (``steps``), applying them under load with ``lock_timeout`` and retries (``apply``),
lock waits and index phases sampled beside it (``locks``), where the migration comes from
(``source``), and the thread that runs it beside a load and the rollback (``session``)."""

from nightly_pipeline.suite.migration.apply import MigrationFailed, MigrationRun, apply_migration
from nightly_pipeline.suite.migration.locks import Blocked, IndexProgress, LockWaits
from nightly_pipeline.suite.migration.session import MigrationThread, roll_back
from nightly_pipeline.suite.migration.source import MigrationSource
from nightly_pipeline.suite.migration.steps import (
    Migration,
    MigrationFormatError,
    Step,
    parse_migration,
    read_migration,
    split_statements,
)

__all__ = [
    "Blocked",
    "IndexProgress",
    "LockWaits",
    "Migration",
    "MigrationFailed",
    "MigrationFormatError",
    "MigrationRun",
    "MigrationSource",
    "MigrationThread",
    "Step",
    "apply_migration",
    "parse_migration",
    "read_migration",
    "roll_back",
    "split_statements",
]
