-- Undoes 0003_message_size (and its unsafe variant): idempotent, so it also runs before
-- the up migration to clear what a crashed run left.
-- migrate:settings lock_timeout=2s retries=10 retry_pause_s=0.2

-- migrate:step drop_index transaction=false
DROP INDEX CONCURRENTLY IF EXISTS messages_size_idx;

-- migrate:step drop_column
ALTER TABLE messages DROP COLUMN IF EXISTS size_bytes, DROP COLUMN IF EXISTS sized_at;
