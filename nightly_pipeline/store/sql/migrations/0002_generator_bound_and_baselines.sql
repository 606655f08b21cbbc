-- 0002: mark results whose load generator fell behind (their latency verdicts are not
-- blamed on the target, DESIGN §6), and make room for baselines (DESIGN §7).

-- Existing rows take the default: results written before 0002 were not known to be bound.
ALTER TABLE test_results ADD COLUMN generator_bound BOOLEAN DEFAULT FALSE;

-- Placeholder owned by analysis/: one baseline per (profile, test, metric, tag set),
-- computed from nights that were not judged regressed. A later migration may reshape it.
CREATE TABLE baselines (
    profile     TEXT NOT NULL,
    test        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    tags        TEXT NOT NULL DEFAULT '{}',
    method      TEXT NOT NULL,
    first_night DATE NOT NULL,
    last_night  DATE NOT NULL,
    n_nights    INTEGER NOT NULL,
    center      DOUBLE NOT NULL,
    spread      DOUBLE,
    computed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (profile, test, metric, tags)
);
