"""The testbed's next migrations: the schema change the platform ships after its current
ones (``sql/``), applied and rolled back by Test 13 under load, never by the launcher.

``next_migration(name, dsn)`` is the ``MigrationSource`` of ``next_migrations/<name>.up.sql``
with the shared down file of its number; ``TestbedConfig.next_migration`` chooses which
one the platform ships (the fault knobs: ``0003_message_size_unsafe``, the milder
``0003_message_size_plain_index``, or ``0003_message_size_breaking``: safe locks, but a
rename the running API does not know).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nightly_pipeline.suite.migration.source import MigrationSource

SAFE = "0003_message_size"
UNSAFE = "0003_message_size_unsafe"
PLAIN_INDEX = "0003_message_size_plain_index"
BREAKING = "0003_message_size_breaking"


def migrations_dir() -> Path:
    return Path(str(resources.files("nightly_pipeline.testbed").joinpath("next_migrations")))


def next_migration(name: str, dsn: str) -> MigrationSource:
    """``name``'s up file and the down file of its number (``0003_*`` -> ``0003_message_size``)."""
    folder = migrations_dir()
    up = folder / f"{name}.up.sql"
    downs = sorted(folder.glob(f"{name[:4]}_*.down.sql"))
    if not up.is_file() or len(downs) != 1:
        known = sorted(p.name.removesuffix(".up.sql") for p in folder.glob("*.up.sql"))
        raise ValueError(f"no next migration {name!r} with one down file; known: {known}")
    return MigrationSource(dsn=dsn, up=up, down=downs[0], may_prefill=True)
