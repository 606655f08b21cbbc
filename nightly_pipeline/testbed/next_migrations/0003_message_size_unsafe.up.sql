-- Fault knob next_migration: "0003_message_size_unsafe" (CONTRACT.md): the same schema
-- change written the way that stalls a platform under traffic, with the two mistakes
-- strong_migrations and squawk warn about first. No lock_timeout: a lock is waited for
-- without bound and every query queues behind the wait. A volatile default
-- (clock_timestamp()) for the column that records when the size was taken: PostgreSQL
-- rewrites the whole table, and its indexes, under an ACCESS EXCLUSIVE lock (no read or
-- write of messages meanwhile). The backfill in one statement. A plain CREATE INDEX: a
-- SHARE lock on messages for the whole build, every POST /v1/messages waits. Test 13
-- must fail on it and name the statement that blocked.

-- migrate:step add_column
ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS size_bytes INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS sized_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp();

-- migrate:step backfill
UPDATE messages SET size_bytes = octet_length(ciphertext) WHERE size_bytes = 0;

-- migrate:step index
CREATE INDEX messages_size_idx ON messages (conversation_id, size_bytes);
