-- The testbed's next migration (CONTRACT.md, "Next migration"): messages get their
-- ciphertext's size, filled for the rows already there, and an index to find a
-- conversation's large messages. Written the way it must run under traffic (Test 13):
-- every lock wait bounded and retried, the constant default a catalog change (no
-- rewrite, PostgreSQL >= 11), the backfill in small committed batches with a pause
-- between them, the index built CONCURRENTLY (writes go on meanwhile).
-- migrate:settings lock_timeout=500ms retries=8 retry_pause_s=0.2

-- migrate:step add_column
ALTER TABLE messages ADD COLUMN IF NOT EXISTS size_bytes INTEGER NOT NULL DEFAULT 0;

-- The backfill walks the table in physical order, 100 pages a batch (a TID range scan:
-- the random UUID keys would touch a page per row); $1 (text) is the next page, the answer the
-- one after the batch, NULL past the table's end (which the updated rows push on, once).
-- migrate:step backfill batch=100 pause_s=0.05 from=0
WITH done AS (
    UPDATE messages SET size_bytes = octet_length(ciphertext)
    WHERE ctid >= format('(%s,0)', $1::text::bigint)::tid
      AND ctid < format('(%s,0)', $1::text::bigint + $2::bigint)::tid
      AND size_bytes = 0
    RETURNING 1
)
SELECT CASE WHEN $1::text::bigint < pg_relation_size('messages') / current_setting('block_size')::bigint
            THEN ($1::text::bigint + $2::bigint)::text END
    FROM (SELECT count(*) FROM done) AS written;

-- migrate:step index transaction=false
DROP INDEX CONCURRENTLY IF EXISTS messages_size_idx;
CREATE INDEX CONCURRENTLY messages_size_idx ON messages (conversation_id, size_bytes);
