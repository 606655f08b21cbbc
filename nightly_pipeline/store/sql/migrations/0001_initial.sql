-- 0001: the long-format history of nightly runs.
-- Nights are DATEs, profiles TEXT; timestamps are naive UTC.
-- The migration runner records the version row; this file only shapes tables.

CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TIMESTAMP NOT NULL
);

-- One execution of the suite (or of one ad-hoc test) against one target.
CREATE TABLE runs (
    run_id         TEXT PRIMARY KEY,
    night          DATE NOT NULL,
    profile        TEXT NOT NULL,
    target         TEXT NOT NULL,
    started_at     TIMESTAMP NOT NULL,
    finished_at    TIMESTAMP,
    status         TEXT NOT NULL
                   CHECK (status IN ('running', 'succeeded', 'failed', 'canceled')),
    versions       JSON NOT NULL DEFAULT '{}',   -- {"postgres": "16.4", "redis": "7.4", ...}
    dagster_run_id TEXT
);

-- The verdict of one test for one (night, profile); rewriting a night replaces it.
CREATE TABLE test_results (
    night       DATE NOT NULL,
    profile     TEXT NOT NULL,
    test        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'error')),
    detail      TEXT NOT NULL DEFAULT '',
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    duration_s  DOUBLE NOT NULL,
    PRIMARY KEY (night, profile, test)
);

-- Summary values, long format: one row per (metric, tag set).
-- tags is canonical JSON of a sorted dict, '{}' when none, so equal tag sets compare equal.
CREATE TABLE metrics (
    night   DATE NOT NULL,
    profile TEXT NOT NULL,
    test    TEXT NOT NULL,
    metric  TEXT NOT NULL,
    tags    TEXT NOT NULL DEFAULT '{}',
    value   DOUBLE NOT NULL,
    unit    TEXT NOT NULL DEFAULT '',
    run_id  TEXT NOT NULL,
    PRIMARY KEY (night, profile, test, metric, tags)
);

-- Per-second rows for charts. No primary key on purpose: a year of nightly series is
-- hundreds of millions of rows and an ART index over them costs memory on every insert;
-- the writer rejects duplicate (metric, tags, second) before inserting.
CREATE TABLE series (
    night   DATE NOT NULL,
    profile TEXT NOT NULL,
    test    TEXT NOT NULL,
    metric  TEXT NOT NULL,
    tags    TEXT NOT NULL DEFAULT '{}',
    second  INTEGER NOT NULL,
    count   BIGINT,
    errors  BIGINT,
    mean    DOUBLE,
    p50     DOUBLE,
    p95     DOUBLE,
    p99     DOUBLE,
    max     DOUBLE,
    value   DOUBLE
);

-- One row per threshold expression over the whole run, or per failing/evaluated window.
CREATE TABLE threshold_results (
    night        DATE NOT NULL,
    profile      TEXT NOT NULL,
    test         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '{}',
    expression   TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('run', 'window')),
    passed       BOOLEAN NOT NULL,
    observed     DOUBLE,
    window_start DOUBLE,
    window_end   DOUBLE,
    severity     TEXT NOT NULL DEFAULT 'error'
);
