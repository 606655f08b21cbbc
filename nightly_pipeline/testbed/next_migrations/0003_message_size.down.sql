-- Undoes 0003_message_size (and its unsafe and breaking variants): idempotent, so it
-- also runs before the up migration to clear what a crashed run left.
-- migrate:settings lock_timeout=2s retries=10 retry_pause_s=0.2

-- migrate:step drop_index transaction=false
DROP INDEX CONCURRENTLY IF EXISTS messages_size_idx;

-- migrate:step drop_column
ALTER TABLE messages DROP COLUMN IF EXISTS size_bytes, DROP COLUMN IF EXISTS sized_at;

-- migrate:step restore_digest
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_name = 'messages' AND column_name = 'body_sha256'
    ) THEN
        ALTER TABLE messages RENAME COLUMN body_sha256 TO sha256;
    END IF;
END $$;
