"""Store migration 0006: ``runs.status`` takes ``crashed`` (a run whose process died),
and a version-4 file keeps its runs through the table's rebuild."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from nightly_pipeline.store import MetricStore, latest_version
from tests.store.old_versions import apply_first


def test_a_version_4_file_keeps_its_runs_and_takes_crashed(tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    with duckdb.connect(str(path)) as conn:
        apply_first(conn, 4)
        conn.execute(
            "INSERT INTO runs VALUES ('r0', DATE '2024-03-01', 'ci', 'embedded', "
            "TIMESTAMP '2024-03-01 02:10:00', TIMESTAMP '2024-03-01 02:40:00', 'failed', "
            """'{"postgres": "16.2"}', 'd0'), """
            "('r1', DATE '2024-03-02', 'ci', 'embedded', TIMESTAMP '2024-03-02 02:10:00', "
            "NULL, 'running', '{}', 'd1')"
        )
        with pytest.raises(duckdb.ConstraintException):  # what 0006 is for
            conn.execute("UPDATE runs SET status = 'crashed' WHERE run_id = 'r1'")

    store = MetricStore(path)
    assert store.schema_version() == latest_version() >= 6
    store.finish_run("r1", "crashed", datetime(2024, 3, 2, 3, 0, tzinfo=UTC))

    rows = store.runs().sort("run_id").select("run_id", "status", "versions", "dagster_run_id")
    assert rows.rows() == [
        ("r0", "failed", '{"postgres": "16.2"}', "d0"),
        ("r1", "crashed", "{}", "d1"),
    ]
    with duckdb.connect(str(path)) as conn, pytest.raises(duckdb.ConstraintException):
        conn.execute(  # the rebuilt table still checks its statuses
            "INSERT INTO runs VALUES ('x', DATE '2024-03-03', 'ci', 'e', now(), NULL, "
            "'exploded', '{}', NULL)"
        )
