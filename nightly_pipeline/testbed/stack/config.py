"""Typed, frozen inputs of the launcher, validated once (``validate()`` returns every
problem). Nothing here reads the environment: the entry point passes PATH and paths in."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_NAMES = frozenset({"postgres", "redis", "proxy-postgres", "proxy-redis", "initdb"})


@dataclass(frozen=True)
class ReadyUrl:
    """Ready once ``GET url`` answers 200."""

    url: str


@dataclass(frozen=True)
class ReadyLine:
    """Ready once the process's output has a line matching the regex ``pattern``."""

    pattern: str


@dataclass(frozen=True)
class ProcessSpec:
    """An extra process started after the datastores, in order, logging to
    ``<run_dir>/logs/<name>.log``. ``env=None`` inherits the launcher's environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    ready: ReadyUrl | ReadyLine | None = None
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    cwd: Path | None = None

    def validate(self) -> list[str]:
        errors = []
        if not _NAME.match(self.name) or self.name in RESERVED_NAMES:
            errors.append(f"process name {self.name!r} is invalid or reserved")
        if not self.argv:
            errors.append(f"process {self.name!r}: argv is empty")
        if self.ready_timeout_s <= 0 or self.stop_timeout_s <= 0:
            errors.append(f"process {self.name!r}: timeouts must be > 0")
        if isinstance(self.ready, ReadyLine):
            try:
                re.compile(self.ready.pattern)
            except re.error as exc:
                errors.append(f"process {self.name!r}: bad ready pattern: {exc}")
        return errors


@dataclass(frozen=True)
class StackConfig:
    """Where and how to run the stack. Config keys of the binaries: ``postgres_bin_dir``
    (a directory with postgres, initdb, pg_ctl) and ``redis_server`` (an executable)."""

    run_dir: Path
    postgres_bin_dir: Path | None = None
    redis_server: Path | None = None
    search_path: str | None = None  # PATH to search; None: do not search PATH
    postgres_port: int = 0  # 0: a free port
    redis_port: int = 0
    database: str = "nightly"
    max_connections: int = 200
    shared_buffers: str = "32MB"
    pg_user: str = "nightly-pg"  # used when running as root
    system_dir: Path = Path("/var/lib/nightly-pipeline")  # root only: binary copy, pgdata
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    proxy_max_connections: int = 1024
    proxy_idle_timeout_s: float = 1800.0
    keep_data: bool = False  # keep PostgreSQL's data dir and Redis's AOF after teardown
    redis_appendfsync: str = "always"  # always | everysec | no (see stack/redis.py)
    python: str = field(default=sys.executable)  # runs the fault proxies

    def __post_init__(self) -> None:
        # PostgreSQL changes into its data directory: a relative run_dir would then name
        # another place (its socket lock file could not be created).
        object.__setattr__(self, "run_dir", Path(self.run_dir).absolute())

    def validate(self) -> list[str]:
        errors = []
        for what, port in (("postgres_port", self.postgres_port), ("redis_port", self.redis_port)):
            if not 0 <= port <= 65535:
                errors.append(f"{what} out of range: {port}")
        if self.postgres_port and self.postgres_port == self.redis_port:
            errors.append("postgres_port and redis_port must differ")
        if not _NAME.match(self.database):
            errors.append(f"database name {self.database!r} is invalid")
        if self.max_connections < 100:
            errors.append(f"max_connections must be >= 100, got {self.max_connections}")
        if self.redis_appendfsync not in ("always", "everysec", "no"):
            errors.append(
                f"redis_appendfsync must be always, everysec or no, got {self.redis_appendfsync!r}"
            )
        if not _NAME.match(self.pg_user):
            errors.append(f"pg_user {self.pg_user!r} is invalid")
        for what, value in (
            ("ready_timeout_s", self.ready_timeout_s),
            ("stop_timeout_s", self.stop_timeout_s),
            ("proxy_idle_timeout_s", self.proxy_idle_timeout_s),
            ("proxy_max_connections", self.proxy_max_connections),
        ):
            if value <= 0:
                errors.append(f"{what} must be > 0, got {value}")
        return errors
