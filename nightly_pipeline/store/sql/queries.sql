-- Named queries of the metric store. Each starts at a "-- name: <name>" line and runs
-- alone; parameters are DuckDB named parameters ($name). A NULL filter means "any".

-- name: schema_version_exists
SELECT count(*) FROM information_schema.tables
WHERE table_schema = 'main' AND table_name = 'schema_version';

-- name: schema_version
SELECT coalesce(max(version), 0) FROM schema_version;

-- name: record_schema_version
INSERT INTO schema_version (version, applied_at) VALUES ($version, $applied_at);

-- name: upsert_run
INSERT INTO runs (run_id, night, profile, target, started_at, finished_at, status, versions,
                  dagster_run_id)
VALUES ($run_id, $night, $profile, $target, $started_at, NULL, 'running', $versions,
        $dagster_run_id)
ON CONFLICT (run_id) DO UPDATE SET
    night = excluded.night,
    profile = excluded.profile,
    target = excluded.target,
    started_at = excluded.started_at,
    finished_at = NULL,
    status = 'running',
    versions = excluded.versions,
    dagster_run_id = excluded.dagster_run_id;

-- name: finish_run
UPDATE runs SET status = $status, finished_at = $finished_at
WHERE run_id = $run_id
RETURNING run_id;

-- name: delete_test_results
DELETE FROM test_results WHERE night = $night AND profile = $profile AND test = $test;

-- name: delete_metrics
DELETE FROM metrics WHERE night = $night AND profile = $profile AND test = $test;

-- name: delete_series
DELETE FROM series WHERE night = $night AND profile = $profile AND test = $test;

-- name: delete_threshold_results
DELETE FROM threshold_results WHERE night = $night AND profile = $profile AND test = $test;

-- name: delete_chaos_experiment
DELETE FROM chaos_experiments WHERE night = $night AND profile = $profile AND test = $test;

-- name: delete_chaos_activities
DELETE FROM chaos_activities WHERE night = $night AND profile = $profile AND test = $test;

-- name: insert_test_result
INSERT INTO test_results (night, profile, test, run_id, status, detail, started_at,
                          finished_at, duration_s, generator_bound, load_started_at)
VALUES ($night, $profile, $test, $run_id, $status, $detail, $started_at, $finished_at,
        $duration_s, $generator_bound, $load_started_at);

-- name: insert_chaos_experiment
INSERT INTO chaos_experiments (night, profile, test, run_id, title, status, deviated,
                               started_at, ended_at, error)
VALUES ($night, $profile, $test, $run_id, $title, $status, $deviated, $started_at,
        $ended_at, $error);

-- name: chaos_experiments
-- With the test's own times: load_started_at is the wall time of its series' second 0.
SELECT e.night, e.profile, e.test, e.run_id, e.title, e.status, e.deviated, e.started_at,
       e.ended_at, e.error, r.started_at AS test_started_at, r.load_started_at
FROM chaos_experiments AS e
JOIN test_results AS r USING (night, profile, test)
WHERE e.night = $night
  AND ($profile IS NULL OR e.profile = $profile)
  AND ($test IS NULL OR e.test = $test)
ORDER BY e.profile, e.test;

-- name: chaos_activities
SELECT night, profile, test, run_id, seq, phase, kind, name, status, started_at, ended_at,
       duration_s, output_json, tolerance_met, error
FROM chaos_activities
WHERE night = $night
  AND ($profile IS NULL OR profile = $profile)
  AND ($test IS NULL OR test = $test)
ORDER BY profile, test, seq;

-- name: nights
SELECT night,
       count(*) AS tests,
       count(*) FILTER (WHERE status = 'passed') AS passed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'error') AS errored
FROM test_results
WHERE ($profile IS NULL OR profile = $profile)
GROUP BY night
ORDER BY night DESC;

-- name: recent_results
WITH recent AS (
    SELECT DISTINCT night FROM test_results
    WHERE ($profile IS NULL OR profile = $profile)
    ORDER BY night DESC
    LIMIT $limit_nights
)
SELECT r.night, r.profile, r.test, r.status, r.duration_s, r.generator_bound,
       count(t.passed) FILTER (WHERE NOT t.passed) AS failed_thresholds,
       r.detail, r.run_id
FROM test_results AS r
JOIN recent USING (night)
LEFT JOIN threshold_results AS t
       ON t.night = r.night AND t.profile = r.profile AND t.test = r.test
WHERE ($profile IS NULL OR r.profile = $profile)
GROUP BY r.night, r.profile, r.test, r.status, r.duration_s, r.generator_bound, r.detail,
         r.run_id
ORDER BY r.night DESC, r.profile, r.test;

-- name: metrics
SELECT night, profile, test, metric, tags, value, unit, run_id
FROM metrics
WHERE ($test IS NULL OR test = $test)
  AND ($metric IS NULL OR metric = $metric)
  AND ($profile IS NULL OR profile = $profile)
  AND ($since IS NULL OR night >= $since)
ORDER BY night, profile, test, metric, tags;

-- name: series
SELECT night, profile, test, metric, tags, second, count, errors, mean, p50, p95, p99, max,
       value, resolution_s, seconds_present
FROM series
WHERE night = $night AND profile = $profile AND test = $test
  AND ($metric IS NULL OR metric = $metric)
ORDER BY metric, tags, second;

-- name: threshold_results
SELECT night, profile, test, metric, tags, expression, scope, passed, observed,
       window_start, window_end, severity, not_measurable
FROM threshold_results
WHERE night = $night
  AND ($profile IS NULL OR profile = $profile)
  AND ($test IS NULL OR test = $test)
ORDER BY profile, test, metric, tags, expression, scope, window_start NULLS FIRST;

-- name: runs
SELECT run_id, night, profile, target, started_at, finished_at, status,
       CAST(versions AS TEXT) AS versions, dagster_run_id
FROM runs
WHERE ($night IS NULL OR night = $night)
ORDER BY started_at DESC, run_id;

-- name: metric_history
SELECT m.night, m.profile, m.test, m.metric, m.tags, m.value, m.unit, r.status
FROM metrics AS m
JOIN test_results AS r USING (night, profile, test)
WHERE ($profile IS NULL OR m.profile = $profile)
  AND ($since IS NULL OR m.night >= $since)
  AND ($until IS NULL OR m.night <= $until)
ORDER BY m.profile, m.test, m.metric, m.tags, m.night;

-- name: delete_verdicts
DELETE FROM verdicts WHERE night = $night;

-- name: verdicts
SELECT night, profile, test, metric, tags, direction, verdict, first_bad_night, magnitude,
       confidence, baseline_mean, latest_value, nights, skipped_nights, plan_rule_fired,
       change_nights
FROM verdicts
WHERE ($night IS NULL OR night = $night)
ORDER BY night DESC, (verdict = 'regression') DESC, profile, test, metric, tags;

-- name: latest_verdict_night
SELECT max(night) FROM verdicts;

-- name: delete_baselines
DELETE FROM baselines WHERE computed_for = $computed_for;

-- name: baselines
SELECT computed_for, profile, test, metric, tags, mean, std, low, high, n, first_night,
       last_night
FROM baselines
WHERE computed_for = (SELECT max(computed_for) FROM baselines)
  AND ($profile IS NULL OR profile = $profile)
ORDER BY profile, test, metric, tags;

-- Compaction (store/compaction.py, DESIGN §12). The oldest of the newest $keep nights with
-- results: series of nights before it are downsampled. NULL while fewer nights are stored.
-- name: compaction_cutoff
SELECT night FROM (SELECT DISTINCT night FROM test_results)
ORDER BY night DESC
LIMIT 1 OFFSET $keep - 1;

-- name: per_second_nights_before
SELECT DISTINCT night FROM series
WHERE night < $cutoff AND resolution_s = 1
ORDER BY night;

-- One per-minute row per (night, profile, test, metric, tags, minute) of the per-second rows
-- before $cutoff. count and errors: the minute's sums. mean: count-weighted, so exact.
-- p50: the count-weighted mean of the seconds' medians (an approximation); p95, p99, max:
-- the largest second's (an upper bound: a one-second spike stays visible). value by the
-- row's kind (recorder.series_rows): a rate (errors NULL) its count-weighted mean, i.e. the
-- exact ratio; a gauge (max set, no p50) its latest value; a counter its per-second mean.
-- name: downsample_series_to_minutes
CREATE TEMP TABLE compacted_series AS
SELECT night, profile, test, metric, tags,
       CAST(second // 60 * 60 AS INTEGER) AS second,
       CAST(sum(count) AS BIGINT) AS count,
       CAST(sum(errors) AS BIGINT) AS errors,
       coalesce(sum(mean * count) / nullif(sum(count) FILTER (WHERE mean IS NOT NULL), 0),
                avg(mean)) AS mean,
       coalesce(sum(p50 * count) / nullif(sum(count) FILTER (WHERE p50 IS NOT NULL), 0),
                avg(p50)) AS p50,
       max(p95) AS p95,
       max(p99) AS p99,
       max(max) AS max,
       CASE
           WHEN bool_and(errors IS NULL) AND sum(count) FILTER (WHERE value IS NOT NULL) > 0
               THEN sum(value * count) / sum(count) FILTER (WHERE value IS NOT NULL)
           WHEN bool_or(max IS NOT NULL) AND bool_and(p50 IS NULL)
               THEN arg_max(value, second)
           ELSE avg(value)
       END AS value,
       60 AS resolution_s,
       CAST(count(*) AS INTEGER) AS seconds_present
FROM series
WHERE night < $cutoff AND resolution_s = 1
GROUP BY night, profile, test, metric, tags, second // 60;

-- name: delete_per_second_series_before
DELETE FROM series WHERE night < $cutoff AND resolution_s = 1;

-- name: insert_compacted_series
INSERT INTO series BY NAME SELECT * FROM compacted_series;

-- name: drop_compacted_series
DROP TABLE IF EXISTS compacted_series;

-- name: series_row_count
SELECT count(*) FROM series;

-- name: user_tables
SELECT table_name FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = 'main' AND NOT temporary
ORDER BY table_name;
