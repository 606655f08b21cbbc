-- Fault knob next_migration: "0003_message_size_breaking" (CONTRACT.md): safe locking
-- (lock_timeout, retries) but not backward compatible: after the safe migration's column
-- it renames messages.sha256, which the running API's post_message() and its reads name.
-- A "contract" step shipped before the code that stops using the column (expand/contract,
-- as pgroll does it, keeps both until the old code is gone): every post and read fails
-- from the rename on. Test 13's error check must fail on it.
-- migrate:settings lock_timeout=500ms retries=8 retry_pause_s=0.05

-- migrate:step add_column
ALTER TABLE messages ADD COLUMN IF NOT EXISTS size_bytes INTEGER NOT NULL DEFAULT 0;

-- migrate:step rename_digest
ALTER TABLE messages RENAME COLUMN sha256 TO body_sha256;
