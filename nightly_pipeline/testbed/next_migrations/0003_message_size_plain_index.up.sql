-- Fault knob next_migration: "0003_message_size_plain_index" (CONTRACT.md): the safe
-- migration's column, then its index built the plain way, with no lock_timeout: a SHARE
-- lock on messages for the whole build (0.2-0.3 s on Test 13's 300,000 rows), every
-- POST /v1/messages waits while reads go on. The mildest unsafe migration: Test 13's
-- p95 check, judging posts apart from reads, must still catch it.

-- migrate:step add_column
ALTER TABLE messages ADD COLUMN IF NOT EXISTS size_bytes INTEGER NOT NULL DEFAULT 0;

-- migrate:step index
CREATE INDEX messages_size_idx ON messages (conversation_id, size_bytes);
