-- 0006: a run whose process died (kill -9, a crash, a run worker killed by run
-- monitoring) is closed as 'crashed' by the next run that finds it (DESIGN §8), so it is
-- not mistaken for a run that ran and failed ('failed' keeps that meaning).
-- DuckDB cannot alter a CHECK constraint: the table is rebuilt with the same rows.

CREATE TABLE runs_0006 (
    run_id         TEXT PRIMARY KEY,
    night          DATE NOT NULL,
    profile        TEXT NOT NULL,
    target         TEXT NOT NULL,
    started_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP,
    status         TEXT NOT NULL
                   CHECK (status IN ('running', 'succeeded', 'failed', 'canceled', 'crashed')),
    versions       JSON NOT NULL DEFAULT '{}',
    dagster_run_id TEXT
);

INSERT INTO runs_0006
SELECT run_id, night, profile, target, started_at, finished_at, status, versions, dagster_run_id
FROM runs;

DROP TABLE runs;

ALTER TABLE runs_0006 RENAME TO runs;
