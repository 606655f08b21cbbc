-- 0003: history analysis results (DESIGN §7). Replaces 0002's placeholder baselines.

DROP TABLE baselines;

-- Baseline per (profile, test, metric, tag set) as computed for one night, from nights
-- that passed and were not judged regressed. Recomputing a night replaces its rows.
CREATE TABLE baselines (
    computed_for DATE NOT NULL,
    profile      TEXT NOT NULL,
    test         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    tags         TEXT NOT NULL DEFAULT '{}',
    mean         DOUBLE,
    std          DOUBLE,
    low          DOUBLE,
    high         DOUBLE,
    n            BIGINT NOT NULL,
    first_night  DATE,
    last_night   DATE,
    PRIMARY KEY (computed_for, profile, test, metric, tags)
);

-- Change-point regression verdicts evaluated on one night; rewriting a night replaces it.
CREATE TABLE verdicts (
    night           DATE NOT NULL,
    profile         TEXT NOT NULL,
    test            TEXT NOT NULL,
    metric          TEXT NOT NULL,
    tags            TEXT NOT NULL DEFAULT '{}',
    direction       TEXT NOT NULL CHECK (direction IN ('lower', 'higher')),
    verdict         TEXT NOT NULL
                    CHECK (verdict IN ('regression', 'improvement', 'stable', 'insufficient data')),
    first_bad_night DATE,
    magnitude       DOUBLE,
    confidence      DOUBLE,
    baseline_mean   DOUBLE,
    latest_value    DOUBLE,
    nights          BIGINT NOT NULL,
    skipped_nights  BIGINT NOT NULL,
    plan_rule_fired BOOLEAN NOT NULL,
    change_nights   JSON NOT NULL DEFAULT '[]',   -- ISO dates of every change point
    PRIMARY KEY (night, profile, test, metric, tags)
);
