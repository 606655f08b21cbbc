"""Files beside the metric store. Where the store itself lives is ``nightly_pipeline.home``."""

from __future__ import annotations

from pathlib import Path


def lock_path_for(db_path: Path) -> Path:
    """The sibling file whose flock serialises every process using ``db_path``."""
    return db_path.with_name(db_path.name + ".lock")
