-- 0007: a threshold the target cannot support (memory on a deployment whose /metrics lack
-- process_resident_memory_bytes) is neither passed nor failed. Until now the store had
-- no third verdict: such a row was stored passed, with severity 'not_measurable' and no
-- observed value. It gets its own column, the reason, and ``passed`` is NULL for it
-- (NULL: not judged); ``severity`` keeps the check's own.
-- Rows stored before this version keep severity 'not_measurable' (the check's severity
-- was not stored); their reason is in the test result's detail.

ALTER TABLE threshold_results ADD COLUMN not_measurable TEXT;

ALTER TABLE threshold_results ALTER COLUMN passed DROP NOT NULL;

UPDATE threshold_results
SET not_measurable = 'not measurable on this target (stored before schema version 7: '
                     || 'the reason is in the test result''s detail)',
    passed = NULL
WHERE severity = 'not_measurable';
