"""Where Test 13's migration comes from: SQL files in the step format (``steps.py``) or a
command of the platform's own migration tool, with the database it runs against.

The embedded platform hands out its next migration (``testbed.next_migration``); an
external target names one in its target file (``suite.target.load_target``)::

    "migration": {"up": "db/0042_add_size.sql", "down": "db/0042_add_size.down.sql",
                  "dsn_env": "NIGHTLY_MIGRATION_DSN"}
    "migration": {"command": ["alembic", "upgrade", "+1"],
                  "down_command": ["alembic", "downgrade", "-1"],
                  "dsn_env": "NIGHTLY_MIGRATION_DSN"}

A command gets the DSN in ``NIGHTLY_MIGRATION_DSN`` and ``DATABASE_URL``; the lock-wait
sampler uses the same DSN (it needs ``pg_read_all_stats`` or a superuser to see every
session's query).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nightly_pipeline.suite.migration.steps import (
    Migration,
    MigrationFormatError,
    read_migration,
)


@dataclass(frozen=True)
class MigrationSource:
    dsn: str
    up: Path | None = None
    down: Path | None = None
    command: tuple[str, ...] = ()
    down_command: tuple[str, ...] = ()
    may_prefill: bool = False
    """Whether the suite may add rows to the loaded table first (and remove them after):
    yes on the embedded platform, never in a user's database."""

    def errors(self) -> list[str]:
        """Every problem, each with the fix."""
        problems = []
        if urlsplit(self.dsn).scheme not in ("postgres", "postgresql"):
            problems.append("the migration's DSN must start with postgresql://")
        if (self.up is None) == (not self.command):
            problems.append('name either "up" (an SQL file) or "command", not both or neither')
        if self.up is not None and self.down is None:
            problems.append('an SQL migration needs its "down" file (rolled back every run)')
        if self.command and not self.down_command:
            problems.append('a migration command needs its "down_command" (rolled back every run)')
        for path in (self.up, self.down):
            if path is not None:
                try:
                    read_migration(path)
                except (OSError, MigrationFormatError) as exc:
                    problems.append(f"{path}: {exc}")
        return problems

    def up_migration(self) -> Migration | None:
        return read_migration(self.up) if self.up is not None else None

    def down_migration(self) -> Migration | None:
        return read_migration(self.down) if self.down is not None else None


def source_from_file(
    base: Path, raw: object, env: Mapping[str, str]
) -> tuple[MigrationSource | None, list[str]]:
    """The target file's ``migration`` entry (paths relative to ``base``); the problems."""
    if not isinstance(raw, dict):
        return None, ['migration must be an object: {"up": ..., "down": ..., "dsn_env": ...}']
    unknown = set(raw) - {"up", "down", "command", "down_command", "dsn_env"}
    if unknown:
        return None, [f"migration: unknown key(s) {', '.join(sorted(unknown))}"]
    dsn_env = raw.get("dsn_env")
    if not isinstance(dsn_env, str) or dsn_env not in env:
        return None, [
            f"migration.dsn_env must name a set environment variable holding the DSN"
            f" (got {dsn_env!r})"
        ]
    commands = {}
    for key in ("command", "down_command"):
        value = raw.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return None, [f"migration.{key} must be a list of strings (argv)"]
        commands[key] = tuple(value)
    source = MigrationSource(
        dsn=env[dsn_env],
        up=base / raw["up"] if "up" in raw else None,
        down=base / raw["down"] if "down" in raw else None,
        command=commands["command"],
        down_command=commands["down_command"],
    )
    return source, [f"migration: {p}" for p in source.errors()]
