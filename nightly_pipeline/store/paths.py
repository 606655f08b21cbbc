"""Where the metric store lives.

The environment is passed in rather than read here, so that only entry points (CLI,
Dagster resources) look at ``os.environ`` and tests never have to patch it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

STORE_FILENAME = "metrics.duckdb"
DEFAULT_HOME = Path(".nightly")


def default_store_path(env: Mapping[str, str]) -> Path:
    """``$NIGHTLY_HOME/metrics.duckdb``, or ``./.nightly/metrics.duckdb`` when unset or empty."""
    home = env.get("NIGHTLY_HOME", "").strip()
    base = Path(home).expanduser() if home else DEFAULT_HOME
    return base / STORE_FILENAME


def lock_path_for(db_path: Path) -> Path:
    """The sibling file whose flock serialises every process using ``db_path``."""
    return db_path.with_name(db_path.name + ".lock")
