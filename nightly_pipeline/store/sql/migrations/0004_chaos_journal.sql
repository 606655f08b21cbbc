-- 0004: the Chaos Toolkit journal of a chaos test (DESIGN §9), and where the test's load
-- started, so that the journal's wall-clock times land on the per-second series.
-- Journals are kept forever (DESIGN §12): only rewriting the same (night, profile, test)
-- replaces them; any future compaction of series must leave these tables alone.

-- Wall time (naive UTC) of the series' second 0. NULL: not recorded (rows before 0004, or
-- a result without a load). test_results.started_at is earlier: it includes the setup.
ALTER TABLE test_results ADD COLUMN load_started_at TIMESTAMP;

-- One experiment per chaos test result; tests without one write no row.
CREATE TABLE chaos_experiments (
    night      DATE NOT NULL,
    profile    TEXT NOT NULL,
    test       TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    title      TEXT NOT NULL,
    status     TEXT NOT NULL,     -- chaoslib's (completed, failed, aborted, ...) or 'unfinished'
    deviated   BOOLEAN NOT NULL,
    started_at TIMESTAMP,
    ended_at   TIMESTAMP,
    error      TEXT,              -- why the journal is unfinished or unreadable
    PRIMARY KEY (night, profile, test)
);

-- Every activity the journal recorded, in journal order (seq): the steady-state probes
-- before, the method, probes during, the probes after, then the rollbacks.
CREATE TABLE chaos_activities (
    night         DATE NOT NULL,
    profile       TEXT NOT NULL,
    test          TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    phase         TEXT NOT NULL CHECK (phase IN ('hypothesis_before', 'method',
                                'hypothesis_during', 'hypothesis_after', 'rollback')),
    kind          TEXT NOT NULL CHECK (kind IN ('action', 'probe')),
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,  -- succeeded, failed, ... as chaoslib wrote it
    started_at    TIMESTAMP,
    ended_at      TIMESTAMP,
    duration_s    DOUBLE,
    output_json   TEXT,           -- the activity's output as strict JSON; NULL when none
    tolerance_met BOOLEAN,        -- steady-state probes only
    error         TEXT,           -- the exception lines chaoslib recorded, joined
    PRIMARY KEY (night, profile, test, seq)
);
