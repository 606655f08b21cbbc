-- 0005: per-second series are kept N nights, then downsampled to per-minute rows
-- (DESIGN §12, store/compaction.py). A row says which it is; rows written before 0005 and
-- every row a test writes are per-second (the defaults).

-- The width of the row's time bucket in seconds: 1 (per-second) or 60 (per-minute, whose
-- `second` is the first second of its minute).
ALTER TABLE series ADD COLUMN resolution_s INTEGER NOT NULL DEFAULT 1;

-- How many per-second rows the bucket merged (1 for a per-second row; up to 60): a
-- per-minute counter's `value` is its per-second mean, so value * seconds_present is the
-- minute's exact sum.
ALTER TABLE series ADD COLUMN seconds_present INTEGER NOT NULL DEFAULT 1;
